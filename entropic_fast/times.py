"""Time changes of a Profile (entropic, rescaled, loss-adaptive, spectral: docs/design.md section 1) and their inverse.

All integrals are taken in ``u = log sigma`` on the monotone cubic interpolant of the integrand (``curves``),
and :func:`equal_steps` inverts the same interpolant, so the two agree to rounding. Each time is named by its
integrand (a function ``(prof, smooth, sigma_min, sigma_max) -> values on the grid``); the table of schedule
kinds (``kinds``) says which integrand each kind integrates. The profile's plausibility against the trivial
bound is checked here too (:func:`guard`), before a time is built from it.
"""
import warnings

import numpy as np

from . import checks, curves
from .errors import InputError
from .profile import Profile


def check_profile(prof):
    if not isinstance(prof, Profile):
        hint = " (load a file with ef.Profile.load(path))" if isinstance(prof, (str, bytes)) or hasattr(prof, "__fspath__") \
            else ""
        raise InputError(f"expected a Profile{hint}, got {type(prof).__name__} {prof!r:.60}")
    return prof


def _smoothing(prof, smooth):
    """Isotonic smoothing is on by default for sampled profiles, off for exact curves."""
    smooth = checks.flag(smooth, "smooth", allow_none=True)
    return (not prof.exact) if smooth is None else smooth


def checked_mse(prof):
    """``(mse, its maximum)`` of a profile whose every sigma has samples and whose error is not all zero."""
    e = check_profile(prof).mse
    if not np.all(np.isfinite(e)):
        raise InputError(f"profile has sigmas with no samples: {prof.sigmas[~np.isfinite(e)][:3]}")
    top = float(e.max())
    if not top > 0:
        raise InputError("the profile's error is zero at every sigma: there is no time to build a schedule from")
    return e, top


def error_curve(prof, smooth=None):
    """``e(s)`` on the grid; with ``smooth`` (default: sampled profiles) its weighted isotonic fit."""
    e, top = checked_mse(prof)
    if not _smoothing(prof, smooth):
        return e
    # weights 1/stderr^2 relative to the curve's top (finite whatever its scale); stderr floored at 1e-12
    # of the top, sigmas with < 2 samples nearly ignored
    rel = np.maximum(prof.stderr / top, 1e-12)
    w = np.where(np.isfinite(rel), rel**-2.0, 0.0)
    return top * curves.isotonic(e / top, np.where(w > 0, w, max(float(w.max()), 1.0) * 1e-12))


def span(prof, sigma_min, sigma_max):
    """``(sigma_min, sigma_max)`` of a schedule on the profile's grid (default: all of it), checked."""
    lo, hi = prof.sigmas[0], prof.sigmas[-1]
    smin = lo if sigma_min is None else checks.real(sigma_min, "sigma_min")
    smax = hi if sigma_max is None else checks.real(sigma_max, "sigma_max")
    # float32 model limits (k-diffusion's sigma_min / sigma_max) round the grid's ends by up to 6e-8 relative
    if not (lo * (1 - 1e-6) <= smin < smax <= hi * (1 + 1e-6)):
        raise InputError(f"need {lo:.6g} <= sigma_min < sigma_max <= {hi:.6g} (the profiled grid), "
                         f"got sigma_min={smin}, sigma_max={smax}")
    if smax < smin * (1 + MIN_WIDTH):
        raise InputError(f"the range [{smin!r}, {smax!r}] is too narrow for a schedule: sigma_max must be at least "
                         f"{MIN_WIDTH:.1%} above sigma_min")
    return min(max(smin, lo), hi), min(max(smax, lo), hi)


MIN_WIDTH = 1e-3  # the narrowest range a schedule is spread over, relative (float32 steps stay distinct)


# ---- the integrands, in u = log sigma

def entropic_rate(prof, smooth=None, sigma_min=None, sigma_max=None):
    """``dH/du = e / s^2``: entropic time (nats)."""
    return error_curve(prof, smooth) / prof.sigmas**2


def rescaled_rate(prof, smooth=None, sigma_min=None, sigma_max=None):
    """``dR/du = e / s``: rescaled entropic time."""
    return error_curve(prof, smooth) / prof.sigmas


def las_integrand(prof, smooth=None, sigma_min=None, sigma_max=None):
    """LAS: ``sqrt(2 e'(s) / s^3) ds = sqrt(2 de/du) / s du`` (the loss-adaptive schedule)."""
    checked_mse(prof)
    return np.sqrt(2.0 * las_rate(prof, smooth)) / prof.sigmas


def spectral_rate(prof, smooth=None, sigma_min=None, sigma_max=None):
    """Spectral rescaled time, each direction normalised to 1 over ``[sigma_min, sigma_max]`` (default the grid)."""
    checked_mse(prof)
    return _spectral_integrand(prof, smooth, *span(prof, sigma_min, sigma_max))


# a sigma whose relative standard error exceeds this is unresolved: its error is a rare-event estimate
UNRESOLVED = 1 / 3
# Passes of the spatially adaptive smoother after the global one. Measured (LAS error over rescaled's at 256 / 1024
# samples, median of 32 seeds): one pass 1.83x / 2.18x on the 2-D point set of benchmarks/las_accuracy.py, two
# 1.52x / 1.57x, more no better; the Gaussian and the digits model stay below 0.8x either way.
ADAPTIVE_PASSES = 2


def las_rate(prof, smooth=None):
    """``de/du`` on the grid, for the loss-adaptive schedule (Aghapour et al. 2026).

    Exact curves: a 5-point derivative of ``log e`` in ``u`` (fourth order on any grid). Sampled profiles:
    ``log(e + floor)`` smoothed by weighted penalised least squares (weights from the standard errors,
    smoothing chosen by Stein's unbiased risk estimate, ``curves.smooth``; then ``ADAPTIVE_PASSES`` passes
    with the penalty made local by the previous fit's roughness, ``curves.adaptive_penalty``), then
    differentiated the same way; ``floor`` is the largest error among unresolved sigmas (relative stderr >
    1/3), so that rare-event estimates at small errors do not steer the fit. Negative slopes are clipped (the
    exact MMSE is non-decreasing)."""
    e, top = checked_mse(prof)
    u, x = curves.log(prof.sigmas), e / top
    if not _smoothing(prof, smooth):
        z = curves.log(np.maximum(x, 1e-300))
    else:
        sx = prof.stderr / top
        unresolved = ~(sx <= UNRESOLVED * x)
        floor = max(float(x[unresolved].max()) if unresolved.any() else 0.0, 1e-12)
        # relative stderr floored at 1e-4: below that it is rounding (one sample whose square underflows)
        var = (sx / (x + floor)) ** 2
        w = np.where(np.isfinite(var), 1.0 / np.maximum(var, 1e-8), 0.0)
        y = curves.log(x + floor)
        z, _ = curves.smooth(u, y, w)
        for _ in range(ADAPTIVE_PASSES):  # more smoothing where it bends less, the bends read off the last fit
            z, _ = curves.smooth(u, y, w, penalty=curves.adaptive_penalty(u, z))
    slope = np.maximum(curves.derivative_matrix(u) @ z, 0.0)
    return top * curves.exp(z) * slope


def _spectral_integrand(prof, smooth, smin, smax):
    """``dS/du = sum_k A_k (e_k / s) / (R_k(smax) - R_k(smin))``: each direction's rescaled time normalised to 1
    over the schedule's range [smin, smax] (the paper normalises at the final time of sampling), weighted by
    its data amplitude ``A_k``: the root of the centred power, the covariance spectrum (Stancevic et al.)."""
    if not prof.spectral:
        raise InputError("kind 'spectral' needs a spectral profile: profile(..., spectral=True)")
    s, u = prof.sigmas, curves.log(prof.sigmas)
    e = prof.spectra.reshape(s.size, -1).T  # (directions, sigmas)
    if not np.all(np.isfinite(e)):
        raise InputError("profile has sigmas with no samples")
    if _smoothing(prof, smooth):  # isotonic per direction, weighted by sample count
        e = curves.isotonic(e, np.broadcast_to(prof.count, e.shape))
    f = np.maximum(e, 0.0) / s
    ends = curves.integral_at(u, f, [curves.log(smin), curves.log(smax)])  # every direction in one batched call
    total = ends[:, 1] - ends[:, 0]
    amp = np.sqrt(prof.data_covariance.reshape(-1))
    w = np.divide(amp, total, out=np.zeros_like(amp), where=total > 0)
    return w @ f


# ---- a time's inverse: equal steps

def cumulative(prof, rate, smooth=None):
    """A time on ``prof.sigmas``, starting at 0: the integral of ``rate`` (an integrand above) in log sigma."""
    check_profile(prof)
    return curves.cumulative(curves.log(prof.sigmas), rate(prof, smooth))


def equal_steps(prof, steps, rate, name, smin, smax, *, smooth=None):
    """``steps`` sigmas equally spaced in the time of integrand ``rate`` from ``smax`` to ``smin``, then 0."""
    u = curves.log(prof.sigmas)
    f = rate(prof, smooth, smin, smax)
    lo, hi = curves.integral_at(u, f, [curves.log(smin), curves.log(smax)])
    if not hi > lo:
        raise InputError(f"the {name} time does not increase between sigma {smin:.6g} and {smax:.6g}: "
                         "the profile's error is zero there")
    targets = hi - np.arange(steps) / (steps - 1) * (hi - lo)
    s = curves.exp(curves.invert(u, f, targets[1:-1]))
    out = np.concatenate([[smax], s, [smin, 0.0]])
    if np.any(np.diff(out[:-1]) >= 0):
        raise InputError(f"{name} schedule is not strictly descending (the time is too flat to resolve "
                         f"{steps} steps): {out}")
    return out


# ---- plausibility: the trivial bound

def trivial_bound(prof, data=None):
    """``min(d s^2, tr Cov)`` per sigma: the error of the better of ``D(x) = x`` and ``D(x) = E x0``, which
    any trained denoiser should beat. ``tr Cov`` from ``data`` (rows), else the spectral profile's
    covariance spectrum; without either, ``d s^2`` alone."""
    bound = prof.dim * prof.sigmas**2
    trace = None
    if data is not None:
        x = checks.finite_array(data.detach().cpu() if hasattr(data, "detach") else data, "data")
        x = x.reshape(x.shape[0], -1)
        if x.shape[0] >= 2:
            trace = float(x.var(0, ddof=1).sum())
    elif prof.spectral:
        trace = float(prof.data_covariance.sum())
    return bound if trace is None else np.minimum(bound, trace)


def _capped(prof, bound):
    """``prof`` with each sigma's errors scaled down to at most ``bound`` (spread and spectra alike)."""
    f = np.minimum(1.0, bound / np.maximum(prof.mse, 1e-300))
    return prof.with_estimate(prof.mse * f, prof.stderr * f, spectra_factor=f)


def guard(prof, data, cap):
    """Warn (or, with ``cap``, clip) where the profile exceeds :func:`trivial_bound` beyond its sampling error."""
    bound = trivial_bound(prof, data)
    se = np.zeros_like(prof.mse) if prof.exact else np.nan_to_num(prof.stderr, nan=0.0)
    over = prof.mse > bound * 1.05 + 4 * se  # gross excess only: 128 sigmas would trip a 2-se test by chance
    if not over.any():
        return prof
    if cap:
        return _capped(prof, bound)
    j = int(np.argmax(prof.mse / bound))
    warnings.warn(f"the profile exceeds the trivial bound min(d s^2, tr Cov) at {int(over.sum())} sigmas (worst at "
                  f"sigma {prof.sigmas[j]:.4g}: {prof.mse[j]:.4g} against {bound[j]:.4g}), beyond its sampling "
                  "error: an under-trained model? Its schedule will crowd where the error is too high; "
                  "schedule(..., cap=True) clips the profile to the bound", stacklevel=4)
    return prof
