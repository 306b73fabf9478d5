"""Sigma grids and the classic sampling schedules (descending, with a trailing 0)."""
import numpy as np

from . import checks
from .curves import exp, log  # the same bits on every CPU: a grid is the Monte-Carlo run's input
from .errors import InputError


def _check_range(sigma_min, sigma_max):
    sigma_min, sigma_max = checks.real(sigma_min, "sigma_min"), checks.real(sigma_max, "sigma_max")
    if not 0 < sigma_min < sigma_max:
        raise InputError(f"need 0 < sigma_min < sigma_max, got sigma_min={sigma_min}, sigma_max={sigma_max}")
    return sigma_min, sigma_max


def _check_count(n, name, least):
    return checks.integer(n, name, least)


def _ascending(s, what):
    """``s`` if it is finite and strictly ascending, else an InputError saying why."""
    if not np.all(np.isfinite(s)) or np.any(np.diff(s) <= 0):
        i = int(np.argmax(~np.isfinite(s[1:]) | (np.diff(s) <= 0)))
        raise InputError(f"{what} is not strictly ascending in float64 (value {s[i + 1]!r} after {s[i]!r} at index "
                         f"{i + 1}): use fewer points, a wider range or a moderate rho")
    return s


def _with_zero(sigmas):
    return np.append(np.asarray(sigmas, np.float64), 0.0)


def sigma_grid(n=128, sigma_min=0.002, sigma_max=80.0, rho=7.0):
    """Ascending EDM rho grid of ``n`` sigmas (Karras et al. 2022, eq. 5), float64.

    Parameters
    ----------
    n : int
        Sigmas in the grid (at least 2; a profile wants a curve: 32 to 128).
    sigma_min, sigma_max : float
        The ends (the model's trained range; EDM's 0.002 and 80 by default).
    rho : float
        The spacing's exponent (7: EDM's; larger crowds small sigmas).

    Returns
    -------
    numpy.ndarray
        ``n`` ascending sigmas from ``sigma_min`` to ``sigma_max``.
    """
    if isinstance(n, float) and not float(n).is_integer() and sigma_max == 80.0 and float(sigma_min) > n:
        raise InputError(f"sigma_grid(n, sigma_min, sigma_max) takes the number of sigmas first, got n={n!r}: "
                         f"for a grid from {n!r} to {sigma_min!r} call sigma_grid(128, {n!r}, {sigma_min!r})")
    n = _check_count(n, "n", 2)
    sigma_min, sigma_max = _check_range(sigma_min, sigma_max)
    rho = checks.real(rho, "rho", positive=True)
    r = np.linspace(0.0, 1.0, n)
    a, b = log(sigma_min) / rho, log(sigma_max) / rho  # the ends' logs of sigma^(1/rho)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        lo, hi = exp(a), exp(b)
        s = exp(rho * log(lo + r * (hi - lo)))
        if not np.all(np.isfinite(s)):  # tiny rho: the same ramp in log space
            u, v = log(1.0 - r) + a, log(r) + b
            top = np.maximum(u, v)
            s = exp(rho * (top + log(exp(u - top) + exp(v - top))))
    s[0], s[-1] = sigma_min, sigma_max
    return _ascending(s, f"a grid of {n} sigmas from {float(sigma_min)!r} to {float(sigma_max)!r} with rho={rho!r}")


def karras(steps, sigma_min=0.002, sigma_max=80.0, rho=7.0):
    """EDM schedule (Karras et al. 2022): ``steps`` sigmas from sigma_max to sigma_min, then 0."""
    steps = _check_count(steps, "steps", 2)
    return _with_zero(sigma_grid(steps, sigma_min, sigma_max, rho)[::-1])


edm = karras


def exponential(steps, sigma_min=0.002, sigma_max=80.0):
    """Log-linear schedule: sigmas equally spaced in log sigma, then 0."""
    steps = _check_count(steps, "steps", 2)
    sigma_min, sigma_max = _check_range(sigma_min, sigma_max)
    s = exp(np.linspace(log(sigma_max), log(sigma_min), steps))
    s[0], s[-1] = sigma_max, sigma_min
    return _with_zero(s)


def tangent(steps, sigma_min=0.002, sigma_max=80.0, c=0.5):
    """Tangent law ``c tan(...)`` (Align-Your-Steps Thm 3.1; Sun et al. 2026): optimal for N(0, c^2) data."""
    steps = _check_count(steps, "steps", 2)
    sigma_min, sigma_max = _check_range(sigma_min, sigma_max)
    c = checks.real(c, "tangent scale c", positive=True)
    a, b = np.arctan(sigma_max / c), np.arctan(sigma_min / c)
    s = c * np.tan(a + np.arange(steps) / (steps - 1) * (b - a))
    s[0], s[-1] = sigma_max, sigma_min
    return _with_zero(s)


def loglinear_interp(sigmas, steps):
    """Resample a descending sigma list to ``steps`` sigmas, linearly in log sigma (AYS), then 0."""
    steps = _check_count(steps, "steps", 2)
    s = np.asarray(sigmas, np.float64)
    if s.ndim != 1:
        raise InputError(f"sigmas must be 1-D, got shape {s.shape}")
    if s.size and s[-1] == 0:
        s = s[:-1]
    if s.size < 2 or not np.all(np.isfinite(s)) or np.any(s <= 0) or np.any(np.diff(s) >= 0):
        raise InputError(f"sigmas must be >= 2 positive, strictly descending values (a trailing 0 allowed), got {s}")
    old = np.linspace(0, 1, s.size)
    new = np.linspace(0, 1, steps)
    out = exp(np.interp(new, old, log(s)))
    out[0], out[-1] = s[0], s[-1]
    return _with_zero(out)
