"""Time changes (entropic, rescaled, loss-adaptive, spectral) and sampling schedules from a Profile.

All integrals are taken in ``u = log sigma`` on the monotone cubic interpolant of the integrand
(``curves``), and schedules invert the same interpolant, so the two agree to rounding.
"""
import warnings

import numpy as np
import torch

from . import checks, curves, grids
from .errors import InputError
from .profile import Profile

TIME_KINDS = ("entropic", "rescaled", "las", "spectral")
CLASSIC_KINDS = ("edm", "karras", "exponential", "tangent")
KINDS = TIME_KINDS + CLASSIC_KINDS + ("gaussian-optimal",)


def _check_kind(kind, allowed):
    if not isinstance(kind, str) or kind not in allowed:
        raise InputError(f"unknown schedule kind {kind!r}; known kinds: {', '.join(allowed)}")


def _check_profile(prof):
    if not isinstance(prof, Profile):
        hint = " (load a file with ef.Profile.load(path))" if isinstance(prof, (str, bytes)) or hasattr(prof, "__fspath__") \
            else ""
        raise InputError(f"expected a Profile{hint}, got {type(prof).__name__} {prof!r:.60}")
    return prof


def _smoothing(prof, smooth):
    """Isotonic smoothing is on by default for sampled profiles, off for exact curves."""
    return (not prof.exact) if smooth is None else bool(smooth)


def _checked_mse(prof):
    """``(mse, its maximum)`` of a profile whose every sigma has samples and whose error is not all zero."""
    e = _check_profile(prof).mse
    if not np.all(np.isfinite(e)):
        raise InputError(f"profile has sigmas with no samples: {prof.sigmas[~np.isfinite(e)][:3]}")
    top = float(e.max())
    if not top > 0:
        raise InputError("the profile's error is zero at every sigma: there is no time to build a schedule from")
    return e, top


def error_curve(prof, smooth=None):
    """``e(s)`` on the grid; with ``smooth`` (default: sampled profiles) its weighted isotonic fit."""
    e, top = _checked_mse(prof)
    if not _smoothing(prof, smooth):
        return e
    # weights 1/stderr^2 relative to the curve's top (finite whatever its scale); stderr floored at 1e-12
    # of the top, sigmas with < 2 samples nearly ignored
    rel = np.maximum(prof.stderr / top, 1e-12)
    w = np.where(np.isfinite(rel), rel**-2.0, 0.0)
    return top * curves.isotonic(e / top, np.where(w > 0, w, max(float(w.max()), 1.0) * 1e-12))


def integrand(prof, kind="rescaled", smooth=None, sigma_min=None, sigma_max=None):
    """The integrand of a time change in ``u = log sigma`` at the grid sigmas (DESIGN.md section 1).

    ``sigma_min`` / ``sigma_max`` matter only to ``spectral``, whose directions are each normalised to
    1 over that range (default: the whole grid)."""
    _check_kind(kind, TIME_KINDS)
    s = prof.sigmas
    if kind == "entropic":  # dH/du = e / s^2
        return error_curve(prof, smooth) / s**2
    if kind == "rescaled":  # dR/du = e / s
        return error_curve(prof, smooth) / s
    _checked_mse(prof)
    if kind == "spectral":
        return _spectral_integrand(prof, smooth, *_range(prof, sigma_min, sigma_max))
    return np.sqrt(2.0 * las_rate(prof, smooth)) / s  # LAS: sqrt(2 e'(s) / s^3) ds = sqrt(2 de/du) / s du


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
    e, top = _checked_mse(prof)
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


GAUSSIAN_SAMPLERS = ("ddim", "ddim-stochastic", "heun", "dpmpp_2m")


def _kl(var, lam, final, weights=None):
    """``KL(N(0, lam + final^2) || N(0, var))`` summed over directions, each counted ``weights`` times."""
    r = var / (lam + final**2)
    per = 1 / r - 1 + torch.log(r)
    return 0.5 * torch.sum(per if weights is None else weights * per)


def sampler_kl(sigmas, eigenvalues, sampler="ddim", weights=None):
    """KL of a sampler's output on ``N(0, diag(eigenvalues))`` data through descending ``sigmas``, started exactly
    at ``sigmas[0]``, against the data smoothed to the last sigma (torch float64, differentiable). ``weights``
    counts each eigenvalue's directions (an effective spectrum; default one each)."""
    return _kl(sampler_variance(sigmas, eigenvalues, sampler), eigenvalues, sigmas[-1], weights)


def effective_spectrum(prof, size=40):
    """``(eigenvalues, weights)``: the Gaussian whose MMSE ``sum_k w_k lam_k s^2 / (lam_k + s^2)`` fits the
    profile's error curve, by non-negative least squares on a log-spaced grid of ``size`` eigenvalues from
    ``s_min^2`` to ``s_max^2`` (rows weighted by the standard errors; relative weights for an exact curve).
    Stored in ``prof.meta["effective_spectrum"]`` (so a saved profile keeps it): a Gaussian proxy of the model.
    From an exact curve the gaussian-optimal schedule it gives is within 5% of the true spectrum's (in KL);
    from a sampled curve the deconvolution is noisy (1024 samples: 0-7% for DDIM, up to 2x for Heun)."""
    e, _ = _checked_mse(prof)
    s = prof.sigmas
    lam = np.geomspace(s[0] ** 2, s[-1] ** 2, size)
    a = lam[None, :] * s[:, None] ** 2 / (lam[None, :] + s[:, None] ** 2)
    scale = np.maximum(prof.stderr if not prof.exact else 1e-3 * e, 1e-6 * e + 1e-300)
    scale = scale / scale.min()  # only relative weights matter: keep the system's scale (and nnls's tolerance) fixed
    w = curves.nnls(a / scale[:, None], e / scale)
    keep = w > 1e-12 * w.max()
    prof.meta["effective_spectrum"] = {"eigenvalues": lam[keep].tolist(), "weights": w[keep].tolist()}
    return lam[keep], w[keep]


def sampler_variance(sigmas, eigenvalues, sampler="ddim"):
    """Output variance per direction of a sampler of ``entropic_fast.samplers`` on ``N(0, diag(eigenvalues))``
    data, started exactly (``x ~ N(0, lam + sigmas[0]^2)``). With the exact denoiser ``D = lam / (lam + s^2) x``
    every sampler is linear in each direction: the deterministic ones multiply ``x`` by a factor per step
    (DPM++(2M) by a two-term recursion, as it reuses the previous denoised value); stochastic DDIM also adds
    its noise ``c^2`` to the variance at each step."""
    lam = eigenvalues
    g = lambda s: lam / (lam + s**2)  # noqa: E731  the exact denoiser's gain at sigma s
    amp = torch.ones_like(lam)  # x_k = amp * x_0 (deterministic part)
    extra = torch.zeros_like(lam)  # variance added by stochastic steps
    old_amp = h_last = None
    n = sigmas.shape[0]
    for k in range(n - 1):
        cur, nxt = sigmas[k], sigmas[k + 1]
        last = k == n - 2 and bool(nxt == 0)
        if sampler == "ddim":
            factor = (lam + cur * nxt) / (lam + cur**2)
            amp, extra = amp * factor, extra * factor**2
        elif sampler == "ddim-stochastic":
            ratio = (nxt / cur) ** 2
            factor = g(cur) + ratio * (1 - g(cur))
            c2 = nxt**2 * (1 - ratio)
            amp, extra = amp * factor, extra * factor**2 + c2
        elif sampler == "heun":
            e = 1 + (nxt - cur) * (1 - g(cur)) / cur
            factor = e if last else 1 + (nxt - cur) / 2 * ((1 - g(cur)) / cur + (1 - g(nxt)) / nxt * e)
            amp = amp * factor
        elif sampler == "dpmpp_2m":
            den = g(cur) * amp
            if last:
                amp = den
                break
            h = torch.log(cur) - torch.log(nxt)
            if old_amp is None:
                d = den
            else:
                r = h_last / h
                d = (1 + 1 / (2 * r)) * den - (1 / (2 * r)) * old_amp
            old_amp, h_last = den, h
            amp = (nxt / cur) * amp - torch.expm1(-h) * d
        else:
            raise InputError(f"unknown sampler {sampler!r}; known: {', '.join(GAUSSIAN_SAMPLERS)}")
    return (lam + sigmas[0] ** 2) * amp**2 + extra


def ddim_kl(sigmas, eigenvalues):
    """KL of deterministic DDIM on N(0, diag(eigenvalues)) through descending ``sigmas`` (Sun, Poor, Zhang 2026;
    DESIGN.md section 1): :func:`sampler_kl` for ``ddim``."""
    return sampler_kl(sigmas, eigenvalues, "ddim")


def _eigenvalues(prof, eigenvalues, data):
    """``(eigenvalues, weights)`` for the Gaussian-optimal schedule: given, from a PCA of ``data``, the centred
    power of a spectral profile, or else the profile's effective spectrum (weights None: one direction each).

    Given eigenvalues must be finite and >= 0 with a positive one; those of a PCA or of ``P_k`` are
    clipped at 0 (rounding). Zeros are floored at 1e-12 of the largest (a degenerate direction)."""
    if eigenvalues is not None:
        lam = checks.finite_array(eigenvalues, "eigenvalues").reshape(-1)
        if lam.size == 0 or np.any(lam < 0) or not lam.max() > 0:
            raise InputError(f"eigenvalues must be >= 0 with at least one > 0, got {lam[:5].tolist()}"
                             f"{' (min ' + str(lam.min()) + ')' if lam.size else ''}")
    elif data is not None:
        x = torch.as_tensor(checks.finite_array(data, "data")).reshape(len(data), -1)
        if x.shape[0] < 2:
            raise InputError(f"need at least 2 data rows for a PCA, got {x.shape[0]}")
        x = x - x.mean(0)
        small = x.shape[0] < x.shape[1]
        gram = (x @ x.T if small else x.T @ x) / (x.shape[0] - 1)
        lam = np.maximum(torch.linalg.eigvalsh(gram).numpy(), 0.0)
    elif prof.spectral:
        lam = prof.data_covariance.reshape(-1)
    else:
        return effective_spectrum(prof)
    if not lam.max() > 0:
        raise InputError("the data have no variance: every covariance eigenvalue is 0")
    return np.maximum(lam, 1e-12 * lam.max()), None


def _best_tangent_scale(steps, smin, smax, lam, kl_of):
    """The single scale ``c`` whose tangent law has the smallest KL (log-spaced search)."""
    cs = np.geomspace(float(lam.min().sqrt()) / 10, float(lam.max().sqrt()) * 10, 200)
    kl = [float(kl_of(torch.as_tensor(grids.tangent(steps, smin, smax, c)[:-1]), lam)) for c in cs]
    return float(cs[int(np.nanargmin(kl))])


def gaussian_optimal(steps, smin, smax, eigenvalues, iters=500, sampler="ddim", weights=None):
    """Descending sigmas from smax to smin (then 0) minimising ``sampler``'s KL on Gaussian data with these
    eigenvalues (:func:`sampler_kl`; the sampler stops at ``smin``): the best tangent law, refined by L-BFGS
    on log-sigma increments kept positive by a softmax."""
    if sampler not in GAUSSIAN_SAMPLERS:
        raise InputError(f"unknown sampler {sampler!r}; known: {', '.join(GAUSSIAN_SAMPLERS)}")
    lam = torch.as_tensor(np.asarray(eigenvalues, np.float64))
    wts = None if weights is None else torch.as_tensor(np.asarray(weights, np.float64))

    def kl_of(s, e):
        return sampler_kl(s, e, sampler, wts)

    start = grids.tangent(steps, smin, smax, _best_tangent_scale(steps, smin, smax, lam, kl_of))[:-1]
    theta = torch.tensor(curves.log(-np.diff(curves.log(start))), requires_grad=True)
    span = curves.log(smax) - curves.log(smin)

    def sigmas(t):
        frac = torch.cumsum(torch.softmax(t, 0), 0)
        return torch.exp(curves.log(smax) - span * torch.cat([torch.zeros(1, dtype=t.dtype), frac]))

    opt = torch.optim.LBFGS([theta], lr=1, max_iter=iters, history_size=50, tolerance_grad=1e-12,
                            tolerance_change=1e-14, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.log(kl_of(sigmas(theta), lam))
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        s = sigmas(theta).numpy()
    best = s if float(kl_of(torch.as_tensor(s), lam)) <= float(kl_of(torch.as_tensor(start), lam)) else start
    best[0], best[-1] = smax, smin
    return np.append(best, 0.0)


def entropic_time(prof, kind="rescaled", smooth=None):
    """Cumulative time change on ``prof.sigmas``, starting at 0 (entropic: nats)."""
    _check_profile(prof)
    return curves.cumulative(curves.log(prof.sigmas), integrand(prof, kind, smooth))


def _tangent_scale(prof):
    """Scale ``c`` of the Gaussian whose MMSE ``d s^2 c^2 / (s^2 + c^2)`` matches the profile at its largest sigma."""
    s, e, d = prof.sigmas[-1], max(float(prof.mse[-1]), 1e-300), prof.dim
    return float(np.sqrt(e * s**2 / (d * s**2 - e) if d * s**2 > e else e / d))


def _range(prof, sigma_min, sigma_max):
    lo, hi = prof.sigmas[0], prof.sigmas[-1]
    smin = lo if sigma_min is None else checks.real(sigma_min, "sigma_min")
    smax = hi if sigma_max is None else checks.real(sigma_max, "sigma_max")
    # float32 model limits (k-diffusion's sigma_min / sigma_max) round the grid's ends by up to 6e-8 relative
    if not (lo * (1 - 1e-6) <= smin < smax <= hi * (1 + 1e-6)):
        raise InputError(f"need {lo:.6g} <= sigma_min < sigma_max <= {hi:.6g} (the profiled grid), "
                         f"got sigma_min={smin}, sigma_max={smax}")
    return min(max(smin, lo), hi), min(max(smax, lo), hi)


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
    out = prof.with_estimate(prof.mse * f, prof.stderr * f)
    if prof.spectral:
        out.spectral_sum = prof.spectral_sum * f.reshape(-1, *[1] * (prof.spectral_sum.ndim - 1))
    return out


def _guard(prof, data, cap):
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
                  "schedule(..., cap=True) clips the profile to the bound", stacklevel=3)
    return prof


def schedule(prof, steps, kind="rescaled", sigma_min=None, sigma_max=None, smooth=None, cap=False, **options):
    """``steps`` sigmas equally spaced in the chosen time from sigma_max to sigma_min, then 0.

    Time kinds: entropic, rescaled, las, spectral. Classic kinds over the same range: edm/karras
    (``rho``), exponential, tangent (``c``, by default from the profile's large-sigma error).
    ``gaussian-optimal`` minimises deterministic DDIM's KL on Gaussian data with covariance
    ``eigenvalues=``, or those of a PCA of ``data=``, or the profile's data power ``P_k``.

    The time kinds warn where the profile exceeds :func:`trivial_bound` (what predicting ``x`` or the
    data mean would give; ``tr Cov`` from ``data=`` or a spectral profile) by more than 5% plus four
    standard errors, as an under-trained model's does; ``cap=True`` clips the profile to the bound.
    """
    _check_profile(prof)
    _check_kind(kind, KINDS)
    steps = checks.integer(steps, "steps", 2)
    cap = checks.flag(cap, "cap")
    smin, smax = _range(prof, sigma_min, sigma_max)
    if kind in ("edm", "karras"):
        return grids.karras(steps, smin, smax, **options)
    if kind == "exponential":
        return grids.exponential(steps, smin, smax, **options)
    if kind == "tangent":
        c = options.pop("c", None)
        return grids.tangent(steps, smin, smax, _tangent_scale(prof) if c is None else c, **options)
    if kind == "gaussian-optimal":
        lam, weights = _eigenvalues(prof, options.pop("eigenvalues", None), options.pop("data", None))
        sampler = options.pop("sampler", "ddim")
        if options:
            raise InputError(f"unknown options for gaussian-optimal: {sorted(options)}")
        return gaussian_optimal(steps, smin, smax, lam, sampler=sampler, weights=weights)
    data = options.pop("data", None)
    if options:
        raise InputError(f"kind {kind!r} takes no options, got {sorted(options)}")
    prof = _guard(prof, data, cap)
    u = curves.log(prof.sigmas)
    f = integrand(prof, kind, smooth, smin, smax)
    lo, hi = curves.integral_at(u, f, [curves.log(smin), curves.log(smax)])
    if not hi > lo:
        raise InputError(f"the {kind} time does not increase between sigma {smin:.6g} and {smax:.6g}: "
                         "the profile's error is zero there")
    targets = hi - np.arange(steps) / (steps - 1) * (hi - lo)
    s = curves.exp(curves.invert(u, f, targets[1:-1]))
    out = np.concatenate([[smax], s, [smin, 0.0]])
    if np.any(np.diff(out[:-1]) >= 0):
        raise InputError(f"{kind} schedule is not strictly descending (the time is too flat to resolve "
                         f"{steps} steps): {out}")
    return out


BAND_KINDS = ("entropic", "rescaled", "las", "tangent", "edm", "karras", "exponential")


def _shifted(prof, mse, se, j, delta):
    """``prof`` with the mean error ``mse`` at sigma ``j`` moved by ``delta`` (the standard errors ``se`` kept)."""
    mse = mse.copy()
    mse[j] = max(mse[j] + delta, 0.0)
    return prof.with_estimate(mse, se)


def schedule_band(prof, steps, kind="rescaled", level=0.95, sigma_min=None, sigma_max=None, smooth=None):
    """``(lower, upper)``, shaped like :func:`schedule`: the ``level`` confidence band of each sigma from the
    sampling error of the profile.

    Delta method: every sigma's mean error is an independent estimate with standard error ``se_j``; the
    schedule's derivative in each is taken by central differences of the whole pipeline (smoothing,
    integration, inversion) at ``+- se_j``, and ``Var log s_i = sum_j (d log s_i / d e_j)^2 se_j^2``. The
    band is ``s_i exp(+- z sd)``. Exact profiles give a band of zero width. Kinds: entropic, rescaled, las
    and the classic kinds (tangent takes its scale from the profile); spectral and gaussian-optimal depend
    on more than the error curve and are refused."""
    _check_profile(prof)
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
    _check_profile(prof)
    mid = schedule(prof, steps, kind, sigma_min, sigma_max, smooth)
    se = np.zeros_like(prof.mse) if prof.exact else prof.stderr
    grad = np.zeros((max(len(mid) - 3, 0), len(se)))
    if kind in ("edm", "karras", "exponential"):  # these sigmas do not depend on the measured errors
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
