"""Sampling schedules from a Profile: equal steps of a time (``times``) or a kind of the table (``kinds``), and
their confidence bands from the profile's sampling error (delta method).

The time changes and their integrands are ``times``'s, the Gaussian sampler theory ``gaussian``'s, the kinds
``kinds``'s; their public names are re-exported here, where users found them.
"""
import os
import warnings
from typing import Any, Optional, Tuple, Union

import numpy as np

from . import checks, curves, kinds, times
from .errors import InputError
from .gaussian import (GAUSSIAN_SAMPLERS, ddim_kl, effective_spectrum, gaussian_optimal, sampler_kl,  # noqa: F401
                       sampler_variance)
from .kinds import BAND_KINDS, CLASSIC_KINDS, KINDS, TIME_KINDS  # noqa: F401
from .interval import choose
from .profile import Profile
from .times import (ADAPTIVE_PASSES, UNRESOLVED, check_profile, error_curve, las_rate, span,  # noqa: F401
                    trivial_bound)


def integrand(prof, kind="rescaled", smooth=None, sigma_min=None, sigma_max=None):
    """The integrand of a time change in ``u = log sigma`` at the grid sigmas (docs/design.md section 1).

    ``sigma_min`` / ``sigma_max`` matter only to ``spectral``, whose directions are each normalised to
    1 over that range (default: the whole grid)."""
    return kinds.get(kind, TIME_KINDS).rate(check_profile(prof), smooth, sigma_min, sigma_max)


def entropic_time(prof: Profile, kind: str = "rescaled", smooth: Optional[bool] = None) -> np.ndarray:
    """Cumulative time change on ``prof.sigmas``, starting at 0 (entropic: nats).

    Parameters
    ----------
    prof : Profile
        The model's measured error curve.
    kind : str
        A time kind: entropic, rescaled, las or spectral (``schedules.TIME_KINDS``).
    smooth : bool, optional
        Isotonic smoothing of a sampled error curve (default on for sampled profiles).

    Returns
    -------
    numpy.ndarray
        The time at each grid sigma, non-decreasing, float64.
    """
    check_profile(prof)
    k = kinds.get(kind, TIME_KINDS)
    return curves.cumulative(curves.log(prof.sigmas), k.rate(prof, smooth))


def schedule(prof: Union[Profile, str, os.PathLike], steps: int, kind: Optional[str] = None,
             sigma_min: Optional[float] = None, sigma_max: Optional[float] = None, smooth: Optional[bool] = None,
             cap: bool = False, *, sampler: str = "ddim", interval: Union[str, Tuple[float, float], None] = None,
             **options: Any) -> np.ndarray:
    """``steps`` sigmas from the start ``s_max`` down to the stop ``s_min``, then 0, for ``sampler``.

    Parameters
    ----------
    prof : Profile or path
        The model's measured error curve (``ef.profile``), or the file it was saved to.
    steps : int
        Sigmas before the final 0 (a first-order sampler's network evaluations).
    kind : str, optional
        How the steps are spaced (``ef.KINDS``; default: the kind measured to sample best with ``sampler``,
        ``samplers.TABLE``). Time kinds (entropic, rescaled, las, spectral) take equal steps of their time;
        classic kinds (edm/karras with ``rho``, exponential, tangent with ``c``) and the peers (ComfyUI's, A1111's,
        Align-Your-Steps') are formulas of the range; ``gaussian-optimal`` minimises the sampler's KL on Gaussian
        data with covariance ``eigenvalues=``, those of a PCA of ``data=``, or the profile's data power.
    sigma_min, sigma_max : float, optional
        Bounds: the range the schedule stays within (default the profiled grid; in clients, the model's range).
    sampler : str
        The sampler that will run the schedule: ``ddim``/``euler``, ``ddim-stochastic``/``euler_ancestral``,
        ``heun``, ``dpmpp_2m`` (``samplers.NAMES``). It sets the default kind and the chosen interval.
    interval : "auto", "range" or (float, float), optional
        Where the schedule starts and stops. ``"auto"`` (the default for our kinds, ``kinds.OUR_KINDS``): chosen
        from the profile for this sampler and budget (``entropic_fast.interval``), or the interval and spacing
        ``ef.tune`` measured best and wrote into the profile; ``"range"`` (the default for classic kinds and
        peers): the bounds themselves; a pair: exactly these ends (within the bounds).
    smooth : bool, optional
        Isotonic smoothing of a sampled error curve (default on for sampled profiles).
    cap : bool
        Clip the profile to the trivial bound; time kinds otherwise warn where the profile exceeds it by more than
        5% plus four standard errors, as an under-trained model's does.

    Returns
    -------
    numpy.ndarray
        ``steps + 1`` descending float64 sigmas, the last 0 (k-diffusion's convention).
    """
    prof = as_profile(prof)
    from . import samplers  # here: `import entropic_fast` does not load the samplers
    spec = samplers.get(sampler)
    k = kinds.get(spec.kind if kind is None else kind)
    steps = checked_steps(steps)
    cap = checks.flag(cap, "cap")
    smooth = checks.flag(smooth, "smooth", allow_none=True)
    smin, smax = ends(prof, steps, k.name, sigma_min, sigma_max, smooth, sampler=spec.name, interval=interval)
    spaced = _tuned_spacing(_record(prof, spec.name, steps, k.name), k, interval)
    k, options = (k, options) if spaced is k else (spaced, {})  # a tuned spacing takes its own defaults
    if k.name == "gaussian-optimal":
        options = {"sampler": spec.name, **options}
    built = k.build(prof, steps, smin, smax, smooth=smooth, cap=cap, options=options)
    return descending(built, k.name, options, (smin, smax))


def as_profile(prof):
    """A Profile, or the one saved at a path (as ``ef.compare(profile=...)`` takes it), checked."""
    if isinstance(prof, (str, os.PathLike)):
        if not os.path.exists(prof):
            raise InputError(f"no profile file at {os.fspath(prof)!r} (ef.profile(...).save(path) writes one)")
        prof = Profile.load(prof)
    return check_profile(prof)


MAX_STEPS = 10_000  # no sampler runs more; ComfyUI asks steps / denoise of a scheduler (10^7 at denoise 1e-6)


def checked_steps(steps):
    """``steps`` as an int in ``[2, MAX_STEPS]``."""
    steps = checks.integer(steps, "steps", 2)
    if steps > MAX_STEPS:
        raise InputError(f"steps must be at most {MAX_STEPS:,} (no sampler runs more), got {steps:,}")
    return steps


def descending(sigmas, kind, options, bounds):
    """``sigmas`` when finite and strictly descending to the final 0; else a clear error (a range too narrow for
    the steps, or an option out of range) instead of repeated or NaN sigmas. Checked in float32, as clients hold
    them."""
    s = np.asarray(sigmas, np.float64)
    if not (np.all(np.isfinite(s)) and s[-1] == 0 and np.all(np.diff(s.astype(np.float32)) < 0)):
        extra = f" with {options}" if options else ""
        raise InputError(f"kind {kind!r}{extra} on [{bounds[0]:.6g}, {bounds[1]:.6g}] gives sigmas that do not "
                         f"strictly descend ({s[:4].tolist()}...): widen the range or change the option")
    return sigmas


def tuned_key(sampler, steps, kind):
    """The key of a tuned interval (and spacing) in a profile's meta (``ef.tune`` writes it, :func:`ends` and
    :func:`schedule` read it)."""
    return f"{sampler}/{steps}/{kind}"


def ends(prof, steps, kind="rescaled", sigma_min=None, sigma_max=None, smooth=None, *, sampler="ddim",
         interval=None):
    """``(s_min, s_max)``: the stop and the start of :func:`schedule` (its ``interval`` argument, resolved; for
    ``"auto"``, an interval ``ef.tune`` wrote into the profile for this sampler, step count and kind, else the
    rule's)."""
    k = kinds.get(kind)
    lo, hi = span(prof, sigma_min, sigma_max)
    interval = ("auto" if k.chooses else "range") if interval is None else interval
    if isinstance(interval, str) and interval == "range":
        return lo, hi
    if isinstance(interval, str) and interval == "auto":
        found = _tuned(_record(prof, sampler, steps, k.name), lo, hi)
        if found is not None:
            return found
        time = curves.cumulative(curves.log(prof.sigmas), (k.rate or times.rescaled_rate)(prof, smooth))
        return choose(prof, steps, time, sampler, lo, hi)
    if isinstance(interval, str) or np.ndim(interval) != 1 or len(interval) != 2:
        raise InputError(f"interval must be 'auto', 'range' or (sigma_min, sigma_max), got {interval!r}")
    a, b = (checks.real(v, "interval") for v in interval)
    if not lo * (1 - 1e-6) <= a < b <= hi * (1 + 1e-6):
        raise InputError(f"interval {interval!r} must lie within [{lo:.6g}, {hi:.6g}] with its start above its stop")
    return min(max(a, lo), hi), min(max(b, lo), hi)


def _record(prof, sampler, steps, kind):
    """What ``ef.tune`` wrote into the profile for ``sampler`` (or an alias), ``steps`` and ``kind``: its dict, or
    an empty one."""
    from . import samplers  # here: `import entropic_fast` does not load the samplers
    found = prof.provenance.tuned.get(tuned_key(samplers.get(sampler).name, steps, kind))
    return found if isinstance(found, dict) else {}


def _tuned(found, lo, hi):
    """The interval of a tuned record ``found``, kept within the bounds; None without one."""
    if np.ndim(found.get("interval")) != 1 or len(found["interval"]) != 2:
        return None
    a, b = (min(max(float(v), lo), hi) for v in found["interval"])
    return (a, b) if b > a else None


def _tuned_spacing(found, k, interval):
    """The kind that spaces the steps: ``k``, or the spacing of a tuned record ``found`` where the interval is the
    tuned one too (``interval`` "auto", the default of our kinds)."""
    name = found.get("spacing")
    auto = k.chooses if interval is None else isinstance(interval, str) and interval == "auto"
    if not auto or not isinstance(name, str) or name == k.name or name not in kinds.KINDS:
        return k
    return kinds.get(name)


def _shifted(prof, mse, se, j, delta):
    """``prof`` with the mean error ``mse`` at sigma ``j`` moved by ``delta`` (the standard errors ``se`` kept)."""
    mse = mse.copy()
    mse[j] = max(mse[j] + delta, 0.0)
    return prof.with_estimate(mse, se)


def schedule_band(prof: Profile, steps: int, kind: str = "rescaled", level: float = 0.95,
                  sigma_min: Optional[float] = None, sigma_max: Optional[float] = None,
                  smooth: Optional[bool] = None, *, sampler: str = "ddim",
                  interval: Union[str, Tuple[float, float], None] = None) -> Tuple[np.ndarray, np.ndarray]:
    """``(lower, upper)``, shaped like :func:`schedule`: the ``level`` confidence band of each sigma from the
    sampling error of the profile, its ends held where :func:`schedule` puts them (``sampler``, ``interval``).

    Delta method: every sigma's mean error is an independent estimate with standard error ``se_j``; the
    schedule's derivative in each is taken by central differences of the whole pipeline (smoothing,
    integration, inversion) at ``+- se_j``, and ``Var log s_i = sum_j (d log s_i / d e_j)^2 se_j^2``. The
    band is ``s_i exp(+- z sd)``. Exact profiles give a band of zero width. Kinds: entropic, rescaled, las
    and the classic kinds (tangent takes its scale from the profile); spectral and gaussian-optimal depend
    on more than the error curve and are refused.

    Parameters
    ----------
    prof : Profile or path
        The model's measured error curve, with its standard errors.
    steps, kind, sigma_min, sigma_max, smooth, sampler, interval
        As for :func:`schedule`.
    level : float
        The band's confidence level (two-sided).

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        ``(lower, upper)`` sigmas, each ``steps + 1`` long with the final 0.
    """
    prof = as_profile(prof)
    if not isinstance(kind, str) or kind not in BAND_KINDS:
        raise InputError(f"schedule_band supports kinds {', '.join(BAND_KINDS)}; got {kind!r}")
    smooth = checks.flag(smooth, "smooth", allow_none=True)
    level = checks.real(level, "level")
    if not 0 < level < 1:
        raise InputError(f"level must be between 0 and 1, got {level}")
    mid, grad, se = log_sigma_gradient(prof, steps, kind, sigma_min, sigma_max, smooth, sampler=sampler,
                                       interval=interval)
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


def log_sigma_gradient(prof, steps, kind="rescaled", sigma_min=None, sigma_max=None, smooth=None, *,
                       sampler="ddim", interval=None):
    """``(sigmas, G, se)``: the schedule, ``G[i, j] = d log s_i / d e_j`` for its inner sigmas ``i`` (all but
    the first, the last non-zero and the 0) by central differences of the whole pipeline at ``+- se_j`` with the
    ends held (:func:`ends`, resolved once), and the profile's standard errors ``se`` (zero for an exact
    profile). What :func:`schedule_band` and adaptive profiling build on."""
    check_profile(prof)
    held = ends(prof, checks.integer(steps, "steps", 2), kind, sigma_min, sigma_max, smooth, sampler=sampler,
                interval=interval)
    k = kinds.get(kind)
    kind = _tuned_spacing(_record(prof, sampler, steps, k.name), k, interval).name  # as `schedule` spaces it
    mid = schedule(prof, steps, kind, sigma_min, sigma_max, smooth, sampler=sampler, interval=held)
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
            up = schedule(_shifted(prof, mse, se, j, se[j]), steps, kind, sigma_min, sigma_max, smooth, interval=held)
            down = schedule(_shifted(prof, mse, se, j, -step), steps, kind, sigma_min, sigma_max, smooth,
                            interval=held)
            grad[:, j] = (curves.log(up[inner]) - curves.log(down[inner])) / (se[j] + step)
    return mid, grad, se
