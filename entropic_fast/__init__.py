"""entropic_fast: entropic-time sampling schedules for trained diffusion models (see docs/design.md).

The submodules a user reads about (``analytic``, ``samplers``, ``metrics``, ``adapters``, ``plots``,
``data`` ...) are attributes of the package, imported on first use so that ``import entropic_fast``
stays light.
"""
import importlib
from typing import TYPE_CHECKING

from .errors import InputError, Interrupted, ProfileFormatError
from .profiling import profile
from .grids import sigma_grid
from .profile import Profile
from .schedules import KINDS, entropic_time, schedule, schedule_band

# the modules of the public API (docs/api.md); the rest are internals, importable by name but not promised
PUBLIC_MODULES = ("analytic", "samplers", "metrics", "adapters", "plots", "schedules", "grids", "curves", "kinds",
                  "gaussian", "peers", "comparison", "recorder", "interval", "tuning", "data", "digits", "digits16",
                  "times", "control")
_INTERNAL = ("kernels", "fingerprint", "units", "checkpoint", "signals", "files", "checks", "estimate", "adaptive",
             "profiling", "protocol", "sums", "batches", "demo", "cli")
_LAZY = PUBLIC_MODULES + _INTERNAL

__all__ = ["sigma_grid", "profile", "compare", "tune", "Recorder", "Profile", "entropic_time", "schedule",
           "schedule_band", "KINDS", "InputError", "ProfileFormatError", "Interrupted", *PUBLIC_MODULES]
__version__ = "0.1.0"

if TYPE_CHECKING:  # loaded on first use (below); named here for type checkers and the API reference
    from .comparison import compare
    from .recorder import Recorder
    from .tuning import tune


def __getattr__(name):
    if name == "compare":  # the schedule benchmark: loaded on first use, with the samplers it runs
        from .comparison import compare
        globals()["compare"] = compare
        return compare
    if name == "tune":  # the interval searched on the model
        from .tuning import tune
        globals()["tune"] = tune
        return tune
    if name == "Recorder":  # profiles recorded while training
        from .recorder import Recorder
        globals()["Recorder"] = Recorder
        return Recorder
    if name in _LAZY:
        module = importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module 'entropic_fast' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | {"compare", "tune", "Recorder"})
