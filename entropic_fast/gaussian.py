"""Gaussian sampler theory: what each sampler of ``samplers`` does to Gaussian data with the exact denoiser, its
KL in closed form (Sun, Poor, Zhang 2026, docs/design.md section 1), and the schedule that minimises it.

With ``D = lam / (lam + s^2) x`` every sampler is linear in each eigen-direction, so its output variance follows
from its recurrences run on scalars; DPM++(2M)'s is ``samplers.dpmpp_2m_update`` itself.
"""
import numpy as np
import torch

from . import checks, curves, grids
from .errors import InputError
from .times import checked_mse


GAUSSIAN_SAMPLERS = ("ddim", "ddim-stochastic", "heun", "dpmpp_2m")  # samplers.TABLE's (tests/test_samplers_metrics.py)


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


def effective_spectrum(prof, size=40, top=None):
    """``(eigenvalues, weights)``: the Gaussian whose MMSE ``sum_k w_k lam_k s^2 / (lam_k + s^2)`` fits the
    profile's error curve, by non-negative least squares on a log-spaced grid of ``size`` eigenvalues from
    ``s_min^2`` to ``s_max^2`` (rows weighted by the standard errors; relative weights for an exact curve).
    A Gaussian proxy of the model (the profile is not changed).
    From an exact curve the gaussian-optimal schedule it gives is within 5% of the true spectrum's (in KL);
    from a sampled curve the deconvolution is noisy (1024 samples: 0-7% for DDIM, up to 2x for Heun).
    ``top`` caps the eigenvalues (no direction of the data varies more than ``tr Cov``, the error's plateau): noise
    in a sampled plateau otherwise fits spurious directions of huge variance."""
    e, _ = checked_mse(prof)
    s = prof.sigmas
    lam = np.geomspace(s[0] ** 2, s[-1] ** 2 if top is None else min(s[-1] ** 2, max(top, 4 * s[0] ** 2)), size)
    a = lam[None, :] * s[:, None] ** 2 / (lam[None, :] + s[:, None] ** 2)
    scale = np.maximum(prof.stderr if not prof.exact else 1e-3 * e, 1e-6 * e + 1e-300)
    scale = scale / scale.min()  # only relative weights matter: keep the system's scale (and nnls's tolerance) fixed
    w = curves.nnls(a / scale[:, None], e / scale)
    keep = w > 1e-12 * w.max()
    return lam[keep], w[keep]


def sampler_variance(sigmas, eigenvalues, sampler="ddim"):
    """Output variance per direction of a sampler of ``entropic_fast.samplers`` on ``N(0, diag(eigenvalues))``
    data, started exactly (``x ~ N(0, lam + sigmas[0]^2)``): ``(lam + s_0^2) amp^2 + extra`` of
    :func:`sampler_gain`."""
    amp, extra = sampler_gain(sigmas, eigenvalues, sampler)
    return (eigenvalues + sigmas[0] ** 2) * amp**2 + extra


def sampler_gain(sigmas, eigenvalues, sampler="ddim"):
    """``(amp, extra)`` per direction: a sampler of ``entropic_fast.samplers`` on ``N(0, diag(eigenvalues))`` data
    maps its start ``x`` to ``amp * x`` plus independent noise of variance ``extra``. With the exact denoiser
    ``D = lam / (lam + s^2) x`` every sampler is linear in each direction: the deterministic ones multiply ``x``
    by a factor per step (DPM++(2M) by a two-term recursion, as it reuses the previous denoised value);
    stochastic DDIM also adds its noise ``c^2`` to the variance at each step. Each sampler's step is its table
    entry's ``gaussian_step`` (``samplers.TABLE``).

    torch (differentiable) or numpy; ``sigmas`` may carry trailing axes that broadcast against the eigenvalues
    (``sigmas[k]`` of shape ``(C, 1)``: ``C`` schedules at once, as ``interval`` searches them)."""
    from . import samplers  # here: `import entropic_fast` does not load the samplers
    entry = samplers.get(sampler)
    lam = eigenvalues
    amp = lam * 0 + sigmas[0] * 0 + 1  # x_k = amp * x_0 (deterministic part), broadcast over schedules
    log, expm1 = (torch.log, torch.expm1) if torch.is_tensor(lam) else (np.log, np.expm1)
    state = {"amp": amp, "extra": amp * 0, "log": log, "expm1": expm1}  # extra: variance added by stochastic steps
    n = sigmas.shape[0]
    for k in range(n - 1):
        cur, nxt = sigmas[k], sigmas[k + 1]
        if entry.gaussian_step(state, lam, cur, nxt, k == n - 2 and bool((nxt == 0).all())):
            break
    return state["amp"], state["extra"]


def ddim_kl(sigmas, eigenvalues):
    """KL of deterministic DDIM on N(0, diag(eigenvalues)) through descending ``sigmas`` (Sun, Poor, Zhang 2026;
    docs/design.md section 1): :func:`sampler_kl` for ``ddim``."""
    return sampler_kl(sigmas, eigenvalues, "ddim")


def eigenvalues_of(prof, eigenvalues, data):
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
        if x.shape[1] != prof.dim:
            raise InputError(f"data rows hold {x.shape[1]} values, the profile's data {prof.dim}: give the rows "
                             "(N, *shape) of the data the profile measured")
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
