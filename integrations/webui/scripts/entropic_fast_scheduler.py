"""A1111 / Forge extension: schedules from an entropic_fast profile in the "Schedule type" dropdown.

Install: link ``integrations/webui`` into the webui's ``extensions/`` folder (e.g. as
``extensions/entropic_fast``; its ``install.py`` installs entropic_fast into the webui's Python from this
repository), or copy there the folder ``make webui`` writes (the extension with the package inside; it runs from
there). Settings > Entropic schedules: the profile file (``entropic-fast profile ...`` or ``ef.profile(...).save``)
and the kind (rescaled entropic time by default), registered at load so that ``--nowebui`` (the API alone) has
them too. Adds "Entropic" to the dropdown, registered under its name and its label (the dropdown passes labels).
Forge's Flux gets flow times. Without a usable profile a generation still runs: Karras' schedule and a warning
(``adapters.clients``: what every client integration shares).
"""
import hashlib
import os
import sys
import warnings

from modules import script_callbacks, sd_schedulers, shared

_FOLDER = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
if os.path.isdir(os.path.join(_FOLDER, "entropic_fast")) and _FOLDER not in sys.path:
    sys.path.append(_FOLDER)  # the package inside a copied `make webui` folder; an installed one comes first

try:
    from entropic_fast import Profile
    from entropic_fast.adapters.clients import KINDS, guarded, karras
    from entropic_fast.adapters.kdiffusion import scheduler
except ImportError as _e:  # the webui goes on without the scheduler; say why once, no traceback
    Profile = None
    KINDS = ("rescaled",)
    print(f"entropic_fast: not importable in the webui's Python ({_e}): the Entropic schedule is not added. Copy "
          "the folder `make webui` writes into extensions/, or pip install the repository into the webui's Python")

OPTION, KIND_OPTION = "entropic_fast_profile", "entropic_fast_kind"
SECTION = ("entropic_fast", "Entropic schedules")
_cache = {}


def _profile():
    """The profile named in the settings, loaded once per file content (a copy that keeps the old mtime, as
    ``cp -p`` or ``rsync -a`` make, is still read again)."""
    path = os.path.expanduser(str(getattr(shared.opts, OPTION, "") or ""))
    try:
        with open(path, "rb") as f:
            key = (path, hashlib.sha256(f.read()).hexdigest())
        if key not in _cache:
            _cache.clear()
            _cache[key] = Profile.load(path)
        return _cache[key]
    except Exception as e:  # noqa: BLE001  said by sigmas(), which falls back
        raise RuntimeError(f"no usable profile ({e}); set Settings > Entropic schedules > profile file") from e


def _kind():
    kind = getattr(shared.opts, KIND_OPTION, "rescaled") or "rescaled"
    if kind not in KINDS:
        warnings.warn(f"entropic_fast: unknown kind {kind!r} in the settings; using rescaled")
        return "rescaled"
    return kind


def sigmas(n, sigma_min, sigma_max, device="cpu", **_):
    """The scheduler function Forge calls: ``function(n=steps, sigma_min=..., sigma_max=..., device=...)``; without a
    usable profile, Karras' schedule and a warning (never an error in the middle of a generation)."""
    return guarded(lambda: scheduler(_profile(), _kind())(n, sigma_min, sigma_max, device),
                   lambda: karras(n, sigma_min, sigma_max, device),
                   lambda e: f"entropic_fast: {e}; using Karras' schedule for this generation")


def register():
    """Append the scheduler to the dropdown's list and map its name and label to it (once)."""
    entry = sd_schedulers.Scheduler("entropic", "Entropic", sigmas)
    if entry.name not in sd_schedulers.schedulers_map:
        sd_schedulers.schedulers.append(entry)
        sd_schedulers.schedulers_map[entry.name] = sd_schedulers.schedulers_map[entry.label] = entry


def on_ui_settings():
    shared.opts.add_option(OPTION, shared.OptionInfo("", "Profile file (.npz) for the Entropic schedule",
                                                     section=SECTION))
    shared.opts.add_option(KIND_OPTION, shared.OptionInfo("rescaled", f"Kind of schedule ({', '.join(KINDS)})",
                                                          section=SECTION))


if Profile is not None:
    register()
    on_ui_settings()  # now: with --nowebui no UI is built and its callbacks never run (add_option is idempotent)
    script_callbacks.on_ui_settings(on_ui_settings)
