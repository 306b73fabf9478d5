"""Rectified-flow / flow-matching velocity models ``v(x_t, t)``, ``x_t = (1 - t) x0 + t n``, as EDM denoisers."""
import numpy as np
import torch

from ..errors import InputError
from .base import Adapter


def sigma_to_t(sigma):
    """Flow time of an EDM sigma: ``t = s / (1 + s)``."""
    return sigma / (1 + sigma)


def t_to_sigma(t):
    """EDM sigma of a flow time: ``s = t / (1 - t)``."""
    return t / (1 - t)


class FlowAdapter(Adapter):
    """A velocity model ``model(x_t, t * time_scale) -> v`` (``v = n - x0``) as ``denoiser(x, sigma)``:
    ``x_t = x / (1 + s)``, ``x0 = x_t - t v``. The model gets its own dtype, the time in float32
    (float64 for a float64 model), and the result comes back in float32 (float64 for float64 input)."""

    def __init__(self, model, time_scale=1.0):
        super().__init__(model)
        self.time_scale = float(time_scale)
        self.description = f"flow adapter({type(model).__name__})"

    def settings(self):
        return {"time_scale": self.time_scale}

    def forward(self, x, sigma, labels=None):
        net_dtype = self.dtype or x.dtype
        s = sigma.to(torch.float64).reshape(-1, *([1] * (x.ndim - 1)))
        t = sigma_to_t(s)
        xt = x.to(torch.float64) / (1 + s)
        tt = (t.reshape(-1) * self.time_scale).to(torch.float64 if net_dtype == torch.float64 else torch.float32)
        v = self.net(xt.to(net_dtype), tt) if labels is None else self.net(xt.to(net_dtype), tt, labels)
        v = getattr(v, "sample", v)
        if not torch.is_tensor(v) or v.shape != x.shape:
            raise InputError(f"velocity model output has shape {tuple(getattr(v, 'shape', ()))}, expected the "
                             f"input's {tuple(x.shape)}")
        return (xt - t * v.to(torch.float64)).to(torch.float64 if x.dtype == torch.float64 else torch.float32)


def denoiser(model, time_scale=1.0):
    """Wrap ``model(x_t, t * time_scale) -> v`` (``v = n - x0``) as ``denoiser(x, sigma)``: a :class:`FlowAdapter`.

    Parameters
    ----------
    model : callable
        A velocity model ``model(x_t, t[, labels]) -> v`` (a tensor, or an object with ``.sample``).
    time_scale : float
        What the model's time input is in units of ``t`` (1000 for models trained on t in [0, 1000]).

    Returns
    -------
    FlowAdapter
        ``denoiser(x, sigma, labels=None) -> x0_hat`` in EDM form (``x = x_t (1 + s)``, ``t = s / (1 + s)``)."""
    return FlowAdapter(model, time_scale)


def flow_times(sigmas):
    """A descending sigma list (trailing 0 allowed) as flow times ``t`` in [0, 1).

    Parameters
    ----------
    sigmas : array_like
        Descending EDM sigmas, ``ef.schedule``'s output.

    Returns
    -------
    numpy.ndarray
        ``t = s / (1 + s)``: what flow samplers and ComfyUI's SIGMAS for flow models take."""
    s = np.asarray(sigmas, np.float64)
    if s.ndim != 1 or not np.all(np.isfinite(s)) or np.any(s < 0) or np.any(np.diff(s) >= 0):
        raise InputError(f"sigmas must be finite, descending and >= 0, got {s}")
    return sigma_to_t(s)
