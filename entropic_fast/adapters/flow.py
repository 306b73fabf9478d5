"""Rectified-flow / flow-matching velocity models ``v(x_t, t)``, ``x_t = (1 - t) x0 + t n``, as EDM denoisers."""
import numpy as np
import torch

from ..errors import InputError


def sigma_to_t(sigma):
    """Flow time of an EDM sigma: ``t = s / (1 + s)``."""
    return sigma / (1 + sigma)


def t_to_sigma(t):
    """EDM sigma of a flow time: ``s = t / (1 - t)``."""
    return t / (1 - t)


def denoiser(model, time_scale=1.0):
    """Wrap ``model(x_t, t * time_scale) -> v`` (``v = n - x0``) as ``denoiser(x, sigma)``:
    ``x_t = x / (1 + s)``, ``x0 = x_t - t v``."""
    def call(x, sigma, labels=None):
        s = sigma.to(torch.float64).reshape(-1, *([1] * (x.ndim - 1)))
        t = sigma_to_t(s)
        xt = (x.to(torch.float64) / (1 + s)).to(x.dtype)
        tt = (t.reshape(-1) * time_scale).to(x.dtype)
        v = model(xt, tt) if labels is None else model(xt, tt, labels)
        v = getattr(v, "sample", v)
        if not torch.is_tensor(v) or v.shape != x.shape:
            raise InputError(f"velocity model output has shape {tuple(getattr(v, 'shape', ()))}, expected the "
                             f"input's {tuple(x.shape)}")
        return (xt.to(torch.float64) - t * v.to(torch.float64)).to(x.dtype)

    call.description = f"flow adapter({type(model).__name__})"
    return call


def flow_times(sigmas):
    """A descending sigma list (trailing 0 allowed) as flow times ``t`` in [0, 1)."""
    s = np.asarray(sigmas, np.float64)
    if s.ndim != 1 or np.any(s < 0) or np.any(np.diff(s) >= 0):
        raise InputError(f"sigmas must be descending and >= 0, got {s}")
    return sigma_to_t(s)
