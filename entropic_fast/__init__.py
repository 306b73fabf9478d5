"""entropic_fast: entropic-time sampling schedules for trained diffusion models (see DESIGN.md)."""
from . import analytic
from .errors import InputError, ProfileFormatError
from .estimate import profile
from .grids import sigma_grid
from .profile import Profile
from .schedules import KINDS, entropic_time, schedule

__all__ = ["analytic", "sigma_grid", "profile", "Profile", "entropic_time", "schedule", "KINDS",
           "InputError", "ProfileFormatError"]
__version__ = "0.1.0"
