"""Sample-quality metrics; here the closed-form KL of deterministic DDIM on Gaussian data."""
import zipfile

import numpy as np
import torch

from . import checks
from .errors import InputError
from .gaussian import GAUSSIAN_SAMPLERS, sampler_kl


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
    for name, a in (("x", x), ("y", y)):
        if not bool(torch.isfinite(a).all()):
            raise InputError(f"{name} holds non-finite values ({int((~torch.isfinite(a)).sum())} of {a.numel()})")
    g = generator or torch.Generator().manual_seed(0)
    dirs = torch.randn(x.shape[1], projections, generator=g, dtype=torch.float64)
    dirs /= dirs.norm(dim=0, keepdim=True)
    px, py = torch.sort(x @ dirs, 0).values, torch.sort(y @ dirs, 0).values
    n = max(len(px), len(py))
    q = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    qx = px[(q * len(px)).long().clamp_max(len(px) - 1)]
    qy = py[(q * len(py)).long().clamp_max(len(py) - 1)]
    return float(((qx - qy) ** 2).mean().sqrt())


def frechet_from_moments(mu_a, cov_a, mu_b, cov_b):
    """Frechet distance between ``N(mu_a, cov_a)`` and ``N(mu_b, cov_b)`` (as FID, Heusel et al. 2017), in float64:
    ``|mu_a - mu_b|^2 + tr(A) + tr(B) - 2 tr((A^1/2 B A^1/2)^1/2)``."""
    return FrechetTo(mu_a, cov_a)(mu_b, cov_b)


class FrechetTo:
    """:func:`frechet_from_moments` to one fixed ``N(mu, cov)`` (a reference): its square root is taken once, so
    each distance costs one symmetric eigenvalue problem (``tr((A^1/2 B A^1/2)^1/2)`` is symmetric in A and B)."""

    def __init__(self, mu, cov):
        self.mu = torch.as_tensor(mu).detach().to("cpu", torch.float64).reshape(-1)
        self.cov = torch.as_tensor(cov).detach().to("cpu", torch.float64).reshape(self.mu.numel(), -1)
        ev, vec = torch.linalg.eigh(self.cov)
        self.root = vec @ torch.diag(ev.clamp_min(0).sqrt()) @ vec.T

    def __call__(self, mu, cov):
        m = torch.as_tensor(mu).detach().to("cpu", torch.float64).reshape(-1)
        c = torch.as_tensor(cov).detach().to("cpu", torch.float64).reshape(m.numel(), -1)
        cross = torch.linalg.eigvalsh(self.root @ c @ self.root).clamp_min(0).sqrt().sum()
        d = (self.mu - m).square().sum() + torch.trace(self.cov) + torch.trace(c) - 2 * cross
        return float(d.clamp_min(0))


def frechet_distance(feat_a, feat_b):
    """Frechet distance between Gaussians fitted to two feature sets ``(n, f)`` (as FID, Heusel et al. 2017)."""
    a = torch.as_tensor(feat_a, dtype=torch.float64).reshape(len(feat_a), -1)
    b = torch.as_tensor(feat_b, dtype=torch.float64).reshape(len(feat_b), -1)
    if a.shape[1] != b.shape[1] or len(a) < 2 or len(b) < 2:
        raise InputError(f"need two feature sets of >= 2 rows and equal width, got {tuple(a.shape)}, {tuple(b.shape)}")
    return frechet_from_moments(a.mean(0), torch.cov(a.T), b.mean(0), torch.cov(b.T))


class Moments:
    """Running float64 sums of feature rows (count, sum, sum of outer products), on their device: the mean and
    covariance a Frechet distance needs, merged by adding."""

    def __init__(self, width, device="cpu", groups=1):
        self.count = torch.zeros(groups, dtype=torch.float64, device=device)
        self.sum = torch.zeros(groups, width, dtype=torch.float64, device=device)
        self.outer = torch.zeros(groups, width, width, dtype=torch.float64, device=device)
        self.nonfinite = torch.zeros(groups, dtype=torch.float64, device=device)

    def add(self, group, feats):
        """Add feature rows to a group; rows with a non-finite value are counted apart (no host sync)."""
        f = feats.to(torch.float64).reshape(feats.shape[0], -1)
        ok = torch.isfinite(f).all(1)
        f = torch.where(ok[:, None], f, 0.0)
        self.count[group] += ok.sum()
        self.nonfinite[group] += (~ok).sum()
        self.sum[group] += f.sum(0)
        self.outer[group] += f.T @ f

    @property
    def parts(self):
        """The tensors by name (an accumulator of ``runtime``: checkpointed, committed, all-reduced)."""
        return {"count": self.count, "sum": self.sum, "outer": self.outer, "nonfinite": self.nonfinite}

    def like(self):
        """Zeroed moments of the same shape."""
        return Moments(self.sum.shape[1], self.sum.device, self.sum.shape[0])

    def mean_cov(self, group):
        """``(mean, covariance)`` (unbiased) of one group."""
        n = float(self.count[group])
        if n < 2:
            raise InputError(f"need at least 2 samples for a covariance, got {int(n)}")
        mu = self.sum[group] / n
        return mu, (self.outer[group] - n * torch.outer(mu, mu)) / (n - 1)


def read_statistics(path):
    """``(mu, sigma)`` of a statistics file in the format FID tools write (``.npz`` with ``mu`` and ``sigma``, as
    pytorch-fid and clean-fid do), never unpickled; checked: a vector and a symmetric square matrix of its size."""
    path = checks.path(path, "statistics file")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ("mu", "sigma") if k not in z.files]
            if missing:
                raise InputError(f"{path} has no {' or '.join(missing)} (it holds {sorted(z.files)}): a statistics "
                                 "file is an .npz with mu (features,) and sigma (features, features)")
            raw = {k: z[k] for k in ("mu", "sigma")}
    except (OSError, ValueError, EOFError, MemoryError, NotImplementedError, zipfile.BadZipFile) as e:
        raise InputError(f"{path} is not a readable statistics file (.npz without pickles): {type(e).__name__}: "
                         f"{str(e)[:200]}") from None  # MemoryError: a header claiming gigabytes
    bad = [f"{k} is {a.dtype}" for k, a in raw.items() if a.dtype.kind not in "fiu"]
    if bad:
        raise InputError(f"{path}: {', '.join(bad)}, not real numbers")
    mu, sigma = np.asarray(raw["mu"], np.float64), np.asarray(raw["sigma"], np.float64)
    if mu.ndim != 1 or sigma.shape != (mu.size, mu.size) or not (np.all(np.isfinite(mu)) and np.all(np.isfinite(sigma))):
        raise InputError(f"{path}: mu must be a finite vector and sigma a finite square matrix of its size, got shapes "
                         f"{mu.shape} and {sigma.shape}")
    if not np.allclose(sigma, sigma.T, rtol=1e-6, atol=1e-9 * max(np.abs(sigma).max(), 1e-300)):
        raise InputError(f"{path}: sigma is not symmetric, so not a covariance")
    eig = np.linalg.eigvalsh(sigma)
    if eig.min() < -1e-6 * max(abs(eig.max()), 1e-300):
        raise InputError(f"{path}: sigma has a negative eigenvalue ({eig.min():.3g}), so it is not a covariance")
    return mu, sigma
