"""Sample-quality metrics; here the closed-form KL of deterministic DDIM on Gaussian data."""
import numpy as np
import torch

from . import checks
from .errors import InputError
from .schedules import GAUSSIAN_SAMPLERS, sampler_kl


def gaussian_kl(sigmas, eigenvalues, sampler="ddim"):
    """``KL(data || output)`` of ``sampler`` (one of ``samplers.SAMPLERS``) on ``N(0, diag(eigenvalues))`` data,
    started exactly at ``sigmas[0]`` and stepping through the given descending sigmas; closed form
    (deterministic samplers) or exact variance recursion (stochastic DDIM). A trailing 0 compares with the
    data itself, else with the data smoothed to the last sigma."""
    if sampler not in GAUSSIAN_SAMPLERS:
        raise InputError(f"sampler must be one of {', '.join(GAUSSIAN_SAMPLERS)}; got {sampler!r}")
    s = torch.as_tensor(checks.finite_array(sigmas, "sigmas"))
    lam = torch.as_tensor(checks.finite_array(eigenvalues, "eigenvalues")).reshape(-1)
    if s.ndim != 1 or s.numel() < 2 or not bool(torch.all(s[:-1] > s[1:])) or bool(s[-1] < 0):
        raise InputError(f"sigmas must be >= 2 strictly descending values >= 0, got {s.tolist()}")
    if lam.numel() < 1 or not bool(torch.all(lam > 0)):
        raise InputError(f"eigenvalues must be finite and > 0, got min {lam.min().item() if lam.numel() else None}")
    return float(sampler_kl(s, lam, sampler))


def gaussian_ddim_kl(sigmas, eigenvalues):
    """``KL(data || DDIM output)`` of deterministic DDIM on ``N(0, diag(eigenvalues))`` data, started exactly
    at ``sigmas[0]`` (Sun, Poor, Zhang 2026): :func:`gaussian_kl` for ``ddim``."""
    return gaussian_kl(sigmas, eigenvalues, "ddim")


def _as_1d(x, name):
    x = np.asarray(x.detach().cpu() if torch.is_tensor(x) else x, np.float64).reshape(-1)
    if x.size == 0 or not np.all(np.isfinite(x)):
        raise InputError(f"{name} must be a non-empty array of finite values")
    return x


def kl_discrete_1d(samples, atoms, weights=None):
    """``KL(data || model)`` for 1-D discrete data: model mass in non-overlapping bins around each atom
    (edges at the midpoints between neighbouring atoms, as the paper's appendix H.2), with half a
    sample added to every bin so that an empty bin gives a finite value."""
    x, a = _as_1d(samples, "samples"), _as_1d(atoms, "atoms")
    order = np.argsort(a)
    a = a[order]
    w = np.full(a.size, 1.0 / a.size) if weights is None else _as_1d(weights, "weights")
    if w.size != a.size:
        raise InputError(f"weights must have one value per atom ({a.size}), got {w.size}")
    w = w[order]
    if np.any(np.diff(a) <= 0) or np.any(w <= 0):
        raise InputError("atoms must be distinct and weights > 0")
    w = w / w.sum()
    counts = np.bincount(np.searchsorted((a[1:] + a[:-1]) / 2, x), minlength=a.size)
    q = (counts + 0.5) / (x.size + 0.5 * a.size)
    return float(np.sum(w * np.log(w / q)))


def _gauss_kde_logpdf(points, samples, bandwidth, chunk=2048):
    """Log density at ``points`` of a Gaussian KDE on ``samples``, by chunked log-sum-exp."""
    out = np.empty(points.size)
    norm = np.log(samples.size) + 0.5 * np.log(2 * np.pi * bandwidth**2)
    for lo in range(0, points.size, chunk):
        z = (points[lo:lo + chunk, None] - samples[None, :]) / bandwidth
        m = -0.5 * z**2
        top = m.max(1, keepdims=True)
        out[lo:lo + chunk] = (top[:, 0] + np.log(np.exp(m - top).sum(1))) - norm
    return out


def kl_continuous_1d(samples, data_samples, data_logpdf, bandwidth=None):
    """Monte-Carlo ``KL(data || model)`` for 1-D continuous data: ``mean log p(x) - log q(x)`` over data
    samples ``x``, with ``q`` a Gaussian KDE of the model's samples (Scott's bandwidth by default)."""
    x, d = _as_1d(samples, "samples"), _as_1d(data_samples, "data_samples")
    if bandwidth is None:
        h = 1.06 * x.std() * x.size ** (-1 / 5)
        if not h > 0:
            raise InputError(f"the samples have no spread (std {x.std()}): pass bandwidth= explicitly")
    else:
        h = checks.real(bandwidth, "bandwidth", positive=True)
    return float(np.mean(np.asarray(data_logpdf(d), np.float64) - _gauss_kde_logpdf(d, x, h)))


def sliced_wasserstein(x, y, projections=256, generator=None):
    """Sliced Wasserstein-2 distance between two sample sets ``(n, *shape)`` (random unit directions,
    1-D W2 of the sorted projections; sets of different sizes compared at matched quantiles)."""
    projections = checks.integer(projections, "projections", 1)
    x = torch.as_tensor(x, dtype=torch.float64).reshape(len(x), -1)
    y = torch.as_tensor(y, dtype=torch.float64).reshape(len(y), -1)
    if len(x) < 1 or len(y) < 1:
        raise InputError(f"need non-empty sample sets, got {len(x)} and {len(y)} rows")
    if x.shape[1] != y.shape[1]:
        raise InputError(f"sample dimensions differ: {x.shape[1]} and {y.shape[1]}")
    g = generator or torch.Generator().manual_seed(0)
    dirs = torch.randn(x.shape[1], projections, generator=g, dtype=torch.float64)
    dirs /= dirs.norm(dim=0, keepdim=True)
    px, py = torch.sort(x @ dirs, 0).values, torch.sort(y @ dirs, 0).values
    n = max(len(px), len(py))
    q = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    qx = px[(q * len(px)).long().clamp_max(len(px) - 1)]
    qy = py[(q * len(py)).long().clamp_max(len(py) - 1)]
    return float(((qx - qy) ** 2).mean().sqrt())


def frechet_distance(feat_a, feat_b):
    """Frechet distance between Gaussians fitted to two feature sets ``(n, f)`` (as FID, Heusel et al. 2017)."""
    a = torch.as_tensor(feat_a, dtype=torch.float64).reshape(len(feat_a), -1)
    b = torch.as_tensor(feat_b, dtype=torch.float64).reshape(len(feat_b), -1)
    if a.shape[1] != b.shape[1] or len(a) < 2 or len(b) < 2:
        raise InputError(f"need two feature sets of >= 2 rows and equal width, got {tuple(a.shape)}, {tuple(b.shape)}")
    ca, cb = torch.cov(a.T).reshape(a.shape[1], -1), torch.cov(b.T).reshape(a.shape[1], -1)
    ev, vec = torch.linalg.eigh(ca)
    root = vec @ torch.diag(ev.clamp_min(0).sqrt()) @ vec.T
    cross = torch.linalg.eigvalsh(root @ cb @ root).clamp_min(0).sqrt().sum()
    d = (a.mean(0) - b.mean(0)).square().sum() + torch.trace(ca) + torch.trace(cb) - 2 * cross
    return float(d.clamp_min(0))
