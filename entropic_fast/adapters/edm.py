"""NVIDIA EDM / EDM2 networks (``net(x, sigma, class_labels)``) as denoisers, and EDM2's logvar fast path.

Loading NVIDIA's pickles needs their repository (``torch_utils``, ``training``) on ``sys.path``.
"""
import contextlib

import numpy as np
import torch

from ..errors import InputError
from ..profile import Profile


def denoiser(net, dtype=None, force_fp32=None):
    """Wrap an EDM/EDM2 ``net`` as ``denoiser(x, sigma, labels=None)``.

    Integer class labels become one-hot rows of width ``net.label_dim``; a conditional net called
    without labels is an error, never a silent all-zero label. ``dtype`` (bf16 / fp16) runs the
    net under autocast; the output comes back as float32 so errors accumulate in float64 unclipped.
    """
    label_dim = int(getattr(net, "label_dim", 0) or 0)
    if dtype not in (None, torch.float32, torch.bfloat16, torch.float16):
        raise InputError(f"dtype must be None, float32, bfloat16 or float16, got {dtype}")

    def call(x, sigma, labels=None):
        onehot = None
        if label_dim:
            if labels is None:
                raise InputError(f"this EDM network is class-conditional (label_dim={label_dim}): pass labels= "
                                 "to profile (one integer class per data row)")
            labels = torch.as_tensor(labels, device=x.device)
            if labels.ndim == 1 and labels.is_floating_point() and not bool((labels == labels.round()).all()):
                bad = labels[labels != labels.round()][:3].tolist()
                raise InputError(f"integer class labels expected (one class per row), got fractional values {bad}; "
                                 "pass one-hot rows (B, label_dim) for soft labels")
            if labels.ndim == 1 and not bool(((labels >= 0) & (labels < label_dim)).all()):
                bad = labels[(labels < 0) | (labels >= label_dim)][:3].tolist()
                raise InputError(f"class labels must be in [0, {label_dim}), got {bad}")
            onehot = labels.to(x.dtype) if labels.ndim == 2 else \
                torch.nn.functional.one_hot(labels.long(), label_dim).to(torch.float32)
            if onehot.shape != (x.shape[0], label_dim):
                raise InputError(f"labels give shape {tuple(onehot.shape)}, expected ({x.shape[0]}, {label_dim})")
        kwargs = {} if force_fp32 is None else {"force_fp32": force_fp32}
        ctx = torch.autocast(x.device.type, dtype=dtype) if dtype in (torch.bfloat16, torch.float16) \
            else contextlib.nullcontext()
        with ctx:
            out = net(x, sigma, onehot, **kwargs)
        return out.float()

    call.description = f"EDM adapter({getattr(net, 'description', type(net).__name__)})"
    return call


@torch.no_grad()
def logvar_mse(net, sigmas, dim):
    """Per-sigma error from EDM2's learned uncertainty: ``e(s) = d exp(u(s)) / w(s)``, ``w = (s^2 + sd^2) / (s sd)^2``.

    EDM2 trains ``w exp(-u) (D - x0)^2 + u`` per element; at its optimum ``exp(u) = w E[(D - x0)^2]``
    (a per-element mean), so ``d exp(u) / w`` estimates ``e(s)``. Only the logvar head runs (no UNet)."""
    if not (hasattr(net, "logvar_fourier") and hasattr(net, "logvar_linear")):
        raise InputError(f"{type(net).__name__} has no EDM2 logvar head (logvar_fourier, logvar_linear)")
    s = np.asarray(sigmas, np.float64)
    dev = next(net.parameters()).device
    c_noise = torch.as_tensor(np.log(s) / 4, dtype=torch.float32, device=dev)
    u = net.logvar_linear(net.logvar_fourier(c_noise)).double().reshape(-1).cpu().numpy()
    sd = float(net.sigma_data)
    w = (s**2 + sd**2) / (s * sd) ** 2
    return dim * np.exp(u) / w


def profile_from_logvar(net, sigmas, dim):
    """A Profile from EDM2's logvar head alone (see :func:`logvar_mse`); ``dim`` is the data dimension."""
    return Profile.from_curve(sigmas, logvar_mse(net, sigmas, dim), dim,
                              meta={"source": "EDM2 logvar", "model": type(net).__name__})
