"""Time changes (entropic, rescaled, loss-adaptive) and sampling schedules from a Profile.

All integrals are taken in ``u = log sigma`` on the monotone cubic interpolant of the integrand
(``curves``), and schedules invert the same interpolant, so the two agree to rounding.
"""
import numpy as np

from . import curves, grids
from .errors import InputError
from .profile import Profile

TIME_KINDS = ("entropic", "rescaled", "las")
CLASSIC_KINDS = ("edm", "karras", "exponential", "tangent")
KINDS = TIME_KINDS + CLASSIC_KINDS


def _check_kind(kind, allowed):
    if kind not in allowed:
        raise InputError(f"unknown schedule kind {kind!r}; known kinds: {', '.join(allowed)}")


def error_curve(prof, smooth=None):
    """``e(s)`` on the grid; with ``smooth`` (default: sampled profiles) its weighted isotonic fit."""
    if not isinstance(prof, Profile):
        raise InputError(f"expected a Profile, got {type(prof).__name__}")
    e = prof.mse
    if not np.all(np.isfinite(e)):
        raise InputError(f"profile has sigmas with no samples: {prof.sigmas[~np.isfinite(e)][:3]}")
    if smooth is None:
        smooth = not prof.exact
    if not smooth:
        return e
    # weights 1/stderr^2; stderr floored at 1e-12 of the curve, sigmas with < 2 samples nearly ignored
    se2 = np.maximum(prof.stderr**2, (1e-12 * max(float(e.max()), 1e-300)) ** 2)
    w = np.where(np.isfinite(se2), 1.0 / se2, 0.0)
    return curves.isotonic(e, np.where(w > 0, w, max(float(w.max()), 1.0) * 1e-12))


def integrand(prof, kind="rescaled", smooth=None):
    """The integrand of a time change in ``u = log sigma`` at the grid sigmas (DESIGN.md section 1)."""
    _check_kind(kind, TIME_KINDS)
    s, e = prof.sigmas, error_curve(prof, smooth)
    if kind == "entropic":  # dH/du = e / s^2
        return e / s**2
    if kind == "rescaled":  # dR/du = e / s
        return e / s
    # LAS (Aghapour et al. 2026): sqrt(2 e'(s) / s^3) ds = sqrt(2 de/du) / s du, with de/du taken as
    # e dlog(e)/du: log e is nearly linear at both ends of the grid, e itself is not (20x smaller error)
    loge = np.log(np.maximum(e, 1e-300 * max(float(e.max()), 1e-300)))
    return np.sqrt(2.0 * e * np.maximum(curves.slopes(np.log(s), loge), 0.0)) / s


def entropic_time(prof, kind="rescaled", smooth=None):
    """Cumulative time change on ``prof.sigmas``, starting at 0 (entropic: nats)."""
    return curves.cumulative(np.log(prof.sigmas), integrand(prof, kind, smooth))


def _tangent_scale(prof):
    """Scale ``c`` of the Gaussian whose MMSE ``d s^2 c^2 / (s^2 + c^2)`` matches the profile at its largest sigma."""
    s, e, d = prof.sigmas[-1], max(float(prof.mse[-1]), 1e-300), prof.dim
    return float(np.sqrt(e * s**2 / (d * s**2 - e) if d * s**2 > e else e / d))


def _range(prof, sigma_min, sigma_max):
    lo, hi = prof.sigmas[0], prof.sigmas[-1]
    smin = lo if sigma_min is None else float(sigma_min)
    smax = hi if sigma_max is None else float(sigma_max)
    tol = 1e-12 * hi
    if not (lo - tol <= smin < smax <= hi + tol):
        raise InputError(f"need {lo:.6g} <= sigma_min < sigma_max <= {hi:.6g} (the profiled grid), "
                         f"got sigma_min={smin}, sigma_max={smax}")
    return min(max(smin, lo), hi), min(max(smax, lo), hi)


def schedule(prof, steps, kind="rescaled", sigma_min=None, sigma_max=None, smooth=None, **options):
    """``steps`` sigmas equally spaced in the chosen time from sigma_max to sigma_min, then 0.

    Time kinds: entropic, rescaled, las. Classic kinds over the same range: edm/karras (``rho``),
    exponential, tangent (``c``, by default from the profile's large-sigma error).
    """
    _check_kind(kind, KINDS)
    if int(steps) != steps or steps < 2:
        raise InputError(f"steps must be an integer >= 2, got {steps!r}")
    steps = int(steps)
    smin, smax = _range(prof, sigma_min, sigma_max)
    if kind in ("edm", "karras"):
        return grids.karras(steps, smin, smax, **options)
    if kind == "exponential":
        return grids.exponential(steps, smin, smax, **options)
    if kind == "tangent":
        return grids.tangent(steps, smin, smax, options.pop("c", None) or _tangent_scale(prof), **options)
    if options:
        raise InputError(f"kind {kind!r} takes no options, got {sorted(options)}")
    u = np.log(prof.sigmas)
    f = integrand(prof, kind, smooth)
    lo, hi = curves.integral_at(u, f, [np.log(smin), np.log(smax)])
    if not hi > lo:
        raise InputError(f"the {kind} time does not increase between sigma {smin:.6g} and {smax:.6g}: "
                         "the profile's error is zero there")
    targets = hi - np.arange(steps) / (steps - 1) * (hi - lo)
    s = np.exp(curves.invert(u, f, targets[1:-1]))
    out = np.concatenate([[smax], s, [smin, 0.0]])
    if np.any(np.diff(out[:-1]) >= 0):
        raise InputError(f"{kind} schedule is not strictly descending (the time is too flat to resolve "
                         f"{steps} steps): {out}")
    return out
