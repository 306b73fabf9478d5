"""Data models with exact denoisers and closed forms: Gaussian, GMM, PointSet (ideal denoiser)."""

import numpy as np
import torch

from . import checks
from .errors import InputError
from .kernels.mixture import gmm_denoise


def _rowwise(sigma, x):
    """Sigma as a float64 column broadcastable against ``x`` (one value per row)."""
    sigma = torch.as_tensor(sigma, dtype=torch.float64, device=x.device)
    return sigma.reshape(-1, *([1] * (x.ndim - 1))).expand(x.shape[0], *([1] * (x.ndim - 1)))


class Gaussian:
    """Zero-mean Gaussian data ``N(0, diag(var))`` and its exact (Wiener) denoiser."""

    def __init__(self, var, shape=None):
        var = checks.numbers64(var, "var")
        if shape is None:
            shape = tuple(var.shape)
        shape = tuple(checks.integer(n, "shape", 1) for n in shape)
        if not shape:
            raise InputError("Gaussian needs a data shape: pass shape=(...) with a scalar variance")
        try:
            var = var.expand(shape).clone()
        except RuntimeError:
            raise InputError(f"variance of shape {tuple(var.shape)} does not fit data shape {shape}") from None
        if not (torch.isfinite(var).all() and (var > 0).all()):
            raise InputError(f"variances must be finite and > 0, got min {var.min().item()}")
        self.var, self.shape, self.dim = var, shape, var.numel()

    def __call__(self, x, sigma, labels=None):
        """``E[x0 | x] = var / (var + sigma^2) x``."""
        s2 = _rowwise(sigma, x) ** 2
        v = self.var.to(x.device)
        return (x.double() * v / (v + s2)).to(x.dtype)

    def sample(self, n, generator=None):
        """``n`` float64 samples of shape ``(n, *shape)``."""
        return torch.randn(n, *self.shape, generator=generator, dtype=torch.float64) * self.var.sqrt()

    def moments(self):
        """``(mean (d,), covariance)``: the covariance as its diagonal (d,)."""
        return torch.zeros(self.dim, dtype=torch.float64), self.var.reshape(-1)

    def mse(self, sigmas):
        """Exact MMSE ``sum_i s^2 v_i / (s^2 + v_i)`` at each sigma (float64 ndarray)."""
        s2 = checks.finite_array(sigmas, "sigmas", 1)[:, None] ** 2
        if np.any(s2 < 0):
            raise InputError(f"sigmas must be >= 0, got {s2.min()}")
        v = self.var.reshape(-1).numpy()[None, :]
        return (s2 * v / (s2 + v)).sum(1)


class GMM:
    """Mixture of isotropic Gaussians ``sum_k w_k N(mu_k, v_k I)`` and its exact denoiser."""

    def __init__(self, means, var, weights=None, chunk=4096):
        means = checks.numbers64(means, "means")
        if means.ndim < 2 or means.shape[0] < 1 or means[0].numel() < 1:
            raise InputError(f"means must have shape (components, *shape) with a non-empty shape, got "
                             f"{tuple(means.shape)}")
        if not bool(torch.isfinite(means).all()):
            raise InputError("means must be finite, got non-finite values")
        k = means.shape[0]
        try:
            var = torch.as_tensor(var, dtype=torch.float64).expand(k).clone()
        except RuntimeError:
            raise InputError(f"var must be a scalar or one value per component ({k}), got shape "
                             f"{tuple(torch.as_tensor(var).shape)}") from None
        w = torch.ones(k, dtype=torch.float64) if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        if w.shape != (k,) or not (torch.isfinite(w).all() and (w >= 0).all() and w.sum() > 0):
            raise InputError(f"weights must be {k} finite values >= 0 with a positive sum, got {w}")
        if not (torch.isfinite(var).all() and (var >= 0).all()):
            raise InputError(f"component variances must be finite and >= 0, got {var}")
        self.means, self.var, self.weights = means, var, w / w.sum()
        self.shape, self.dim, self.chunk = tuple(means.shape[1:]), means[0].numel(), checks.integer(chunk, "chunk", 1)
        self._flat = means.reshape(k, -1)

    @property
    def mixture(self):
        """``(means (K, dim), variances (K,), log weights (K,))``: what the fused ideal kernel takes."""
        return self._flat, self.var, self.weights.log()

    def __call__(self, x, sigma, labels=None):
        """Posterior mean, streamed over components with a running log-sum-exp (memory O(batch x chunk)); at sigma 0
        the rows themselves (no noise to remove: the formula would be 0 / 0 on a point set)."""
        sigma = torch.as_tensor(sigma, device=x.device).expand(x.shape[0])
        out = gmm_denoise(*(t.to(x.device) for t in self.mixture), x, sigma, self.chunk).to(x.dtype)
        return torch.where((sigma == 0).reshape(-1, *([1] * (x.ndim - 1))), x, out)

    def moments(self):
        """``(mean (d,), covariance (d, d))`` of the mixture."""
        w, m = self.weights, self._flat
        mean = w @ m
        c = m - mean
        return mean, (c.T * w) @ c + torch.eye(self.dim, dtype=torch.float64) * float(w @ self.var)

    def sample(self, n, generator=None):
        """``n`` float64 samples of shape ``(n, *shape)``."""
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        noise = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return (self._flat[k] + self.var[k].sqrt()[:, None] * noise).reshape(n, *self.shape)


class PointSet(GMM):
    """The empirical distribution of ``points`` (N, *shape); its denoiser is the ideal (memorising) one."""

    def __init__(self, points, chunk=4096):
        super().__init__(points, 0.0, None, chunk)

    def sample(self, n, generator=None):
        """``n`` points drawn uniformly with replacement."""
        return self.means[torch.randint(self.means.shape[0], (n,), generator=generator)]


def power_law_spectrum(shape, amplitude=1.0, exponent=2.0, floor=1e-3):
    """A symmetric power spectrum ``amplitude / (1 + |k|^2)^(exponent/2) + floor`` on a (C, H, W) DFT grid."""
    if np.ndim(shape) != 1 or len(shape) != 3:
        raise InputError(f"shape must be (C, H, W), got {shape!r}")
    C, H, W = (checks.integer(n, "shape", 1) for n in shape)
    amplitude, floor = checks.real(amplitude, "amplitude"), checks.real(floor, "floor")
    exponent = checks.real(exponent, "exponent")
    if amplitude < 0 or floor < 0 or amplitude + floor <= 0:
        raise InputError(f"a power spectrum needs amplitude >= 0 and floor >= 0, not both 0; got amplitude="
                         f"{amplitude}, floor={floor}")
    ky, kx = torch.fft.fftfreq(H, 1 / H, dtype=torch.float64), torch.fft.fftfreq(W, 1 / W, dtype=torch.float64)
    k2 = ky[:, None] ** 2 + kx[None, :] ** 2
    return (amplitude / (1 + k2) ** (exponent / 2) + floor).expand(C, H, W).clone()


class StationaryGaussian:
    """Zero-mean stationary Gaussian images: covariance diagonal in the orthonormal 2-D Fourier basis,
    ``E|F(x)_k|^2 = power_k`` per channel; the exact denoiser is the Wiener filter."""

    def __init__(self, power):
        power = torch.as_tensor(power, dtype=torch.float64)
        if power.ndim == 2:
            power = power[None]
        if power.ndim != 3 or not (torch.isfinite(power).all() and (power > 0).all()):
            raise InputError(f"power must be a finite positive (C, H, W) array, got shape {tuple(power.shape)}")
        mirrored = torch.roll(torch.flip(power, (-2, -1)), (1, 1), (-2, -1))  # power at -k
        if not torch.allclose(power, mirrored, rtol=1e-12, atol=0):
            raise InputError("power must be symmetric, power[k] == power[-k], for real images")
        self.power, self.shape, self.dim = power, tuple(power.shape), power.numel()

    def _filter(self, x, gain):
        return torch.fft.ifft2(torch.fft.fft2(x, norm="ortho") * gain, norm="ortho").real

    def __call__(self, x, sigma, labels=None):
        """``F^-1(power / (power + s^2) F(x))``."""
        s2 = _rowwise(sigma, x) ** 2
        p = self.power.to(x.device)
        return self._filter(x.double().reshape(-1, *self.shape), p / (p + s2)).reshape(x.shape).to(x.dtype)

    def sample(self, n, generator=None):
        """``n`` float64 images ``(n, C, H, W)``: white noise coloured by ``sqrt(power)``."""
        white = torch.randn(n, *self.shape, generator=generator, dtype=torch.float64)
        return self._filter(white, self.power.sqrt())

    def spectra(self, sigmas):
        """Exact error power ``s^2 P_k / (s^2 + P_k)`` per sigma, (sigmas, C, H, W) float64 ndarray."""
        s2 = np.asarray(sigmas, np.float64)[:, None, None, None] ** 2
        p = self.power.numpy()[None]
        return s2 * p / (s2 + p)

    def mse(self, sigmas):
        """Exact MMSE at each sigma (the spectra summed over frequencies, Parseval)."""
        return self.spectra(sigmas).sum((1, 2, 3))

    @property
    def eigenvalues(self):
        """Covariance eigenvalues (the power spectrum, flattened)."""
        return self.power.reshape(-1).numpy()
