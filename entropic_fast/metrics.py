"""Sample-quality metrics; here the closed-form KL of deterministic DDIM on Gaussian data."""
import numpy as np
import torch

from .errors import InputError
from .schedules import ddim_kl


def gaussian_ddim_kl(sigmas, eigenvalues):
    """``KL(data || DDIM output)`` of deterministic DDIM on ``N(0, diag(eigenvalues))`` data, started exactly
    at ``sigmas[0]`` and stepping through the given descending sigmas (Sun, Poor, Zhang 2026)."""
    s = torch.as_tensor(np.asarray(sigmas, np.float64))
    lam = torch.as_tensor(np.asarray(eigenvalues, np.float64)).reshape(-1)
    if s.ndim != 1 or s.numel() < 2 or not bool(torch.all(s[:-1] > s[1:])) or bool(s[-1] < 0):
        raise InputError(f"sigmas must be >= 2 strictly descending values >= 0, got {s.tolist()}")
    if lam.numel() < 1 or not bool(torch.all(torch.isfinite(lam) & (lam > 0))):
        raise InputError(f"eigenvalues must be finite and > 0, got min {lam.min().item() if lam.numel() else None}")
    return float(ddim_kl(s, lam))
