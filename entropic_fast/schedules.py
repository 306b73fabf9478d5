"""Sampling schedules from a Profile: equal steps of a time (``times``) or a kind of the table (``kinds``), and
their confidence bands from the profile's sampling error (delta method).

The time changes and their integrands are ``times``'s, the Gaussian sampler theory ``gaussian``'s, the kinds
``kinds``'s; their public names are re-exported here, where users found them.
"""
import warnings
from typing import Any, Optional, Tuple

import numpy as np

from . import checks, curves, kinds
from .errors import InputError
from .gaussian import (GAUSSIAN_SAMPLERS, ddim_kl, effective_spectrum, gaussian_optimal, sampler_kl,  # noqa: F401
                       sampler_variance)
from .kinds import BAND_KINDS, CLASSIC_KINDS, KINDS, TIME_KINDS  # noqa: F401
from .profile import Profile
from .times import (ADAPTIVE_PASSES, UNRESOLVED, check_profile, error_curve, las_rate, span,  # noqa: F401
                    trivial_bound)


def integrand(prof, kind="rescaled", smooth=None, sigma_min=None, sigma_max=None):
    """The integrand of a time change in ``u = log sigma`` at the grid sigmas (docs/design.md section 1).

    ``sigma_min`` / ``sigma_max`` matter only to ``spectral``, whose directions are each normalised to
    1 over that range (default: the whole grid)."""
    return kinds.get(kind, TIME_KINDS).rate(check_profile(prof), smooth, sigma_min, sigma_max)


def entropic_time(prof: Profile, kind: str = "rescaled", smooth: Optional[bool] = None) -> np.ndarray:
    """Cumulative time change on ``prof.sigmas``, starting at 0 (entropic: nats)."""
    check_profile(prof)
    k = kinds.get(kind, TIME_KINDS)
    return curves.cumulative(curves.log(prof.sigmas), k.rate(prof, smooth))


def schedule(prof: Profile, steps: int, kind: str = "rescaled", sigma_min: Optional[float] = None,
             sigma_max: Optional[float] = None, smooth: Optional[bool] = None, cap: bool = False,
             **options: Any) -> np.ndarray:
    """``steps`` sigmas equally spaced in the chosen time from sigma_max to sigma_min, then 0.

    Time kinds: entropic, rescaled, las, spectral. Classic kinds over the same range: edm/karras
    (``rho``), exponential, tangent (``c``, by default from the profile's large-sigma error).
    ``gaussian-optimal`` minimises deterministic DDIM's KL on Gaussian data with covariance
    ``eigenvalues=``, or those of a PCA of ``data=``, or the profile's data power ``P_k`` (``kinds.TABLE``).

    The time kinds warn where the profile exceeds :func:`trivial_bound` (what predicting ``x`` or the
    data mean would give; ``tr Cov`` from ``data=`` or a spectral profile) by more than 5% plus four
    standard errors, as an under-trained model's does; ``cap=True`` clips the profile to the bound.
    """
    check_profile(prof)
    k = kinds.get(kind)
    steps = checks.integer(steps, "steps", 2)
    cap = checks.flag(cap, "cap")
    smin, smax = span(prof, sigma_min, sigma_max)
    return k.build(prof, steps, smin, smax, smooth, cap, options)


def _shifted(prof, mse, se, j, delta):
    """``prof`` with the mean error ``mse`` at sigma ``j`` moved by ``delta`` (the standard errors ``se`` kept)."""
    mse = mse.copy()
    mse[j] = max(mse[j] + delta, 0.0)
    return prof.with_estimate(mse, se)


def schedule_band(prof: Profile, steps: int, kind: str = "rescaled", level: float = 0.95,
                  sigma_min: Optional[float] = None, sigma_max: Optional[float] = None,
                  smooth: Optional[bool] = None) -> Tuple[np.ndarray, np.ndarray]:
    """``(lower, upper)``, shaped like :func:`schedule`: the ``level`` confidence band of each sigma from the
    sampling error of the profile.

    Delta method: every sigma's mean error is an independent estimate with standard error ``se_j``; the
    schedule's derivative in each is taken by central differences of the whole pipeline (smoothing,
    integration, inversion) at ``+- se_j``, and ``Var log s_i = sum_j (d log s_i / d e_j)^2 se_j^2``. The
    band is ``s_i exp(+- z sd)``. Exact profiles give a band of zero width. Kinds: entropic, rescaled, las
    and the classic kinds (tangent takes its scale from the profile); spectral and gaussian-optimal depend
    on more than the error curve and are refused."""
    check_profile(prof)
    if not isinstance(kind, str) or kind not in BAND_KINDS:
        raise InputError(f"schedule_band supports kinds {', '.join(BAND_KINDS)}; got {kind!r}")
    level = checks.real(level, "level")
    if not 0 < level < 1:
        raise InputError(f"level must be between 0 and 1, got {level}")
    mid, grad, se = log_sigma_gradient(prof, steps, kind, sigma_min, sigma_max, smooth)
    var = np.zeros(len(mid))
    var[1:len(mid) - 2] = (grad**2) @ (se**2)
    width = curves.exp(normal_quantile(level) * np.sqrt(var))
    lower, upper = mid / width, mid * width
    lower[-1] = upper[-1] = 0.0
    return lower, upper


def normal_quantile(level):
    """``z`` of a two-sided ``level`` band of a normal estimate (1.96 at 0.95)."""
    import statistics
    return statistics.NormalDist().inv_cdf(0.5 + level / 2)


def log_sigma_gradient(prof, steps, kind="rescaled", sigma_min=None, sigma_max=None, smooth=None):
    """``(sigmas, G, se)``: the schedule, ``G[i, j] = d log s_i / d e_j`` for its inner sigmas ``i`` (all but
    the first, the last non-zero and the 0) by central differences of the whole pipeline at ``+- se_j``, and
    the profile's standard errors ``se`` (zero for an exact profile). What :func:`schedule_band` and
    adaptive profiling build on."""
    check_profile(prof)
    mid = schedule(prof, steps, kind, sigma_min, sigma_max, smooth)
    se = np.zeros_like(prof.mse) if prof.exact else prof.stderr
    grad = np.zeros((max(len(mid) - 3, 0), len(se)))
    if kinds.get(kind).needs == "range":  # these sigmas do not depend on the measured errors
        return mid, grad, se
    if not np.all(np.isfinite(se)):
        raise InputError(f"profile has sigmas with fewer than 2 samples (no standard error): "
                         f"{prof.sigmas[~np.isfinite(se)][:3]}")
    inner = slice(1, len(mid) - 2)
    mse = prof.mse  # once: a controlled profile computes it (and se) by regression
    with warnings.catch_warnings():  # what the profile warns of was said once, by the call above
        warnings.simplefilter("ignore")
        for j in np.flatnonzero(se > 0):
            step = min(se[j], mse[j])
            up = schedule(_shifted(prof, mse, se, j, se[j]), steps, kind, sigma_min, sigma_max, smooth)
            down = schedule(_shifted(prof, mse, se, j, -step), steps, kind, sigma_min, sigma_max, smooth)
            grad[:, j] = (curves.log(up[inner]) - curves.log(down[inner])) / (se[j] + step)
    return mid, grad, se
