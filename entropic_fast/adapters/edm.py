"""NVIDIA EDM / EDM2 networks (``net(x, sigma, class_labels)``) as denoisers, guided ones, their
pickles, and EDM2's logvar fast path.

Loading NVIDIA's pickles needs their repository (``torch_utils``, ``training``, ``dnnlib``) on
``sys.path``: :func:`load` puts ``code_root`` there.
"""
from typing import Any, Callable, Optional, Tuple  # noqa: F401
import contextlib
import os
import pickle
import sys
import warnings

import numpy as np
import torch

from .. import checks
from ..errors import InputError
from .base import Adapter
from ..profile import Profile

EDM2_TRAINED_RANGE = (float(np.exp(-0.4 - 3 * 1.0)), float(np.exp(-0.4 + 3 * 1.0)))  # ln sigma ~ N(-0.4, 1)


class EDMAdapter(Adapter):
    """An EDM/EDM2 ``net(x, sigma, class_labels)`` as ``denoiser(x, sigma, labels=None)`` (see :func:`denoiser`)."""

    def __init__(self, net, dtype=None, force_fp32=None):
        super().__init__(net)
        if dtype not in (None, torch.float32, torch.bfloat16, torch.float16):
            raise InputError(f"dtype must be None, float32, bfloat16 or float16, got {dtype}")
        self.label_dim = int(getattr(net, "label_dim", 0) or 0)
        self.autocast, self.force_fp32 = dtype, force_fp32
        self.description = f"EDM adapter({getattr(net, 'description', type(net).__name__)})"

    def settings(self):
        return {"autocast": str(self.autocast), "force_fp32": self.force_fp32}

    def check_labels(self, labels):
        """Refuse fractional or out-of-range integer class labels (any number of rows; reads them on the host).
        ``profile`` calls it once on all the labels, so the loop never waits for the device on their account."""
        labels = torch.as_tensor(labels)
        if labels.ndim != 1 or not self.label_dim:
            return
        if labels.is_floating_point() and not bool((labels == labels.round()).all()):
            bad = labels[labels != labels.round()][:3].tolist()
            raise InputError(f"integer class labels expected (one class per row), got fractional values {bad}; "
                             "pass one-hot rows (B, label_dim) for soft labels")
        if not bool(((labels >= 0) & (labels < self.label_dim)).all()):
            bad = labels[(labels < 0) | (labels >= self.label_dim)][:3].tolist()
            raise InputError(f"class labels must be in [0, {self.label_dim}), got {bad}")

    def onehot(self, labels, x):
        """One-hot rows of ``labels`` for a batch ``x`` (None for an unconditional net); labels on the host are
        checked here, device labels once by ``profile`` (:meth:`check_labels`)."""
        if not self.label_dim:
            return None
        if labels is None:
            raise InputError(f"this EDM network is class-conditional (label_dim={self.label_dim}): pass labels= "
                             "to profile (one integer class per data row)")
        labels = torch.as_tensor(labels)
        if labels.device.type == "cpu":
            self.check_labels(labels)
        labels = labels.to(x.device)
        onehot = labels.to(x.dtype) if labels.ndim == 2 else \
            torch.nn.functional.one_hot(labels.long(), self.label_dim).to(torch.float32)
        if onehot.shape != (x.shape[0], self.label_dim):
            raise InputError(f"labels give shape {tuple(onehot.shape)}, expected ({x.shape[0]}, {self.label_dim})")
        return onehot

    def forward(self, x, sigma, labels=None):
        return _run(self.net, x, sigma, self.onehot(labels, x), self.autocast, self.force_fp32)


def denoiser(net: torch.nn.Module, dtype: Optional[torch.dtype] = None, force_fp32: Optional[bool] = None) -> Adapter:
    """Wrap an EDM/EDM2 ``net`` as ``denoiser(x, sigma, labels=None)``, an :class:`EDMAdapter` module that
    carries the net's dtype and device.

    Integer class labels become one-hot rows of width ``net.label_dim``; a conditional net called
    without labels is an error, never a silent all-zero label. ``dtype`` (bf16 / fp16) runs the
    net under autocast; the output comes back as float32 so errors accumulate in float64 unclipped.

    Parameters
    ----------
    net : torch.nn.Module
        An EDM / EDM2 preconditioned network ``net(x, sigma, class_labels)`` (``load`` reads NVIDIA's pickles).
    dtype : torch.dtype, optional
        ``torch.bfloat16`` or ``torch.float16``: run the net under autocast (None: its own dtype).
    force_fp32 : bool, optional
        Passed to EDM2's ``Precond.forward`` where given.

    Returns
    -------
    EDMAdapter
        ``denoiser(x, sigma, labels=None) -> x0_hat`` for ``ef.profile`` and the samplers.
    """
    return EDMAdapter(net, dtype, force_fp32)


def _run(net, x, sigma, onehot, dtype, force_fp32):
    kwargs = {} if force_fp32 is None else {"force_fp32": force_fp32}
    ctx = torch.autocast(x.device.type, dtype=dtype) if dtype in (torch.bfloat16, torch.float16) \
        else contextlib.nullcontext()
    with ctx:
        out = net(x, sigma, onehot, **kwargs)
    return out.float()


class GuidedAdapter(Adapter):
    """``D_g + w (D - D_g)`` of an EDM net and its guide (see :func:`guided`)."""

    def __init__(self, net, guide, weight, dtype=None, force_fp32=None):
        super().__init__(EDMAdapter(net, dtype, force_fp32))
        self.guide = None if guide is None else EDMAdapter(guide, dtype, force_fp32)
        self.weight = weight
        by = "unconditional self" if guide is None else getattr(guide, "description", type(guide).__name__)
        self.description = f"guided EDM adapter({getattr(net, 'description', type(net).__name__)}, by {by}, " \
                           f"w={weight:g})"

    def settings(self):
        return {"guide": self.guide, "weight": self.weight}

    def check_labels(self, labels):
        self.net.check_labels(labels)

    def forward(self, x, sigma, labels=None):
        d = self.net(x, sigma, labels)
        if self.weight == 1.0:
            return d
        main = self.net
        dg = _run(main.net, x, sigma, None, main.autocast, main.force_fp32) if self.guide is None \
            else self.guide(x, sigma, labels)
        return dg + self.weight * (d - dg)


def guided(net: torch.nn.Module, guide: Optional[torch.nn.Module] = None, weight: float = 1.0,
           dtype: Optional[torch.dtype] = None, force_fp32: Optional[bool] = None) -> Adapter:
    """Guided denoiser ``D_g + w (D - D_g)``, as EDM2 samples (Karras et al. 2024, "Guiding a diffusion
    model with a bad version of itself", eq. 1).

    ``guide`` is the guiding network (autoguidance: a smaller or less trained EDM2 net, called with the
    same labels; an unconditional one ignores them); ``None`` guides by ``net`` itself without labels
    (classifier-free guidance: meaningful for a net trained with label dropout, as EDM2's
    ``Precond`` reads no labels as the unconditional branch). ``weight=1`` is the plain ``net`` (the
    guide is not run). A :class:`GuidedAdapter` module.

    Parameters
    ----------
    net : torch.nn.Module
        The main EDM / EDM2 network.
    guide : torch.nn.Module, optional
        The guiding network (None: ``net`` itself without labels, classifier-free guidance).
    weight : float
        The guidance weight ``w`` (1: no guidance).
    dtype, force_fp32 : optional
        As for :func:`denoiser`, for both networks.

    Returns
    -------
    GuidedAdapter
        ``denoiser(x, sigma, labels=None) -> D_g + w (D - D_g)``."""
    w = checks.real(weight, "weight")
    if guide is None and not int(getattr(net, "label_dim", 0) or 0):
        raise InputError("guide=None guides by the same net without labels, but this net is unconditional "
                         "(label_dim=0): pass a guiding network")
    return GuidedAdapter(net, guide, w, dtype, force_fp32)


def load(path: str, code_root: Optional[str] = None, device: str = "cpu", key: str = "ema") -> torch.nn.Module:
    """A network from an NVIDIA EDM / EDM2 pickle (``{"ema": net, ...}``), in eval mode, on ``device``.

    Their pickles rebuild the network from the repository's modules (``torch_utils``, ``dnnlib``,
    ``training``): ``code_root`` is a checkout of NVlabs/edm2 (or edm), put on ``sys.path``.
    Unpickling runs code from the file: load only pickles you trust (a warning says so).

    Parameters
    ----------
    path : str
        The network pickle (``.pkl``).
    code_root : str, optional
        A checkout of NVlabs/edm2 (or edm) whose modules the pickle names.
    device : str
        Where the network goes.
    key : str
        The pickle's entry holding the network (``"ema"`` in NVIDIA's snapshots).

    Returns
    -------
    torch.nn.Module
        The network, in eval mode, without gradients, on ``device``."""
    path = os.fspath(path)
    if code_root is not None:
        code_root = os.path.abspath(os.fspath(code_root))
        if not os.path.isdir(code_root):
            raise InputError(f"code_root {code_root!r} is not a folder: pass a checkout of NVlabs/edm2 (or edm)")
        if code_root not in sys.path:
            sys.path.insert(0, code_root)
    if not os.path.isfile(path):
        raise InputError(f"network pickle {path!r}: no such file")
    warnings.warn(f"unpickling {os.path.basename(path)} runs code it contains: load only pickles you trust",
                  stacklevel=2)
    try:
        with open(path, "rb") as f:
            obj = pickle.load(f)
    except ModuleNotFoundError as e:
        hint = "pass code_root=, a checkout of NVlabs/edm2 (or edm) that holds it" if code_root is None else \
            f"{code_root} does not hold it: is it a checkout of NVlabs/edm2 (or edm)?"
        raise InputError(f"{path} needs the module {e.name!r} of NVIDIA's EDM/EDM2 code: {hint}") from None
    except (pickle.UnpicklingError, EOFError, AttributeError) as e:
        raise InputError(f"{path} is not a network pickle ({type(e).__name__}: {e})") from None
    net = obj.get(key) if isinstance(obj, dict) else obj
    if not isinstance(net, torch.nn.Module):
        keys = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        raise InputError(f"{path} holds no network under {key!r} (found {keys})")
    return net.eval().requires_grad_(False).to(device)


@torch.no_grad()
def logvar_mse(net, sigmas, dim, trained_range=None):
    """Per-sigma error from EDM2's learned uncertainty: ``e(s) = d exp(u(s)) / w(s)``, ``w = (s^2 + sd^2) / (s sd)^2``.

    EDM2 trains ``w exp(-u) (D - x0)^2 + u`` per element; at its optimum ``exp(u) = w E[(D - x0)^2]``
    (a per-element mean), so ``d exp(u) / w`` estimates ``e(s)``. Only the logvar head runs (no UNet).

    The head is only trained where training drew sigmas: outside ``trained_range`` (the argument, else
    ``net.trained_range``, else EDM2's ImageNet-512 range ``EDM2_TRAINED_RANGE``, ``exp(P_mean +- 3
    P_std)`` with ``P_mean = -0.4``, ``P_std = 1.0``) it extrapolates, and a warning names the sigmas
    concerned (seen 0.37x to 1.6x off at the ends of 0.002-80 on a briefly trained EDM2 ``Precond``);
    profile those sigmas by sampling instead."""
    if not (hasattr(net, "logvar_fourier") and hasattr(net, "logvar_linear")):
        raise InputError(f"{type(net).__name__} has no EDM2 logvar head (logvar_fourier, logvar_linear)")
    s = np.asarray(sigmas, np.float64)
    lo, hi = trained_range or getattr(net, "trained_range", None) or EDM2_TRAINED_RANGE
    out = s[(s < lo * (1 - 1e-9)) | (s > hi * (1 + 1e-9))]
    if out.size:
        warnings.warn(f"{out.size} of {s.size} sigmas ({out.min():.3g} .. {out.max():.3g}) lie outside "
                      f"[{lo:.3g}, {hi:.3g}], where the logvar head was trained: it extrapolates there. Profile "
                      "them by sampling, or pass trained_range= if the net was trained wider", stacklevel=2)
    dev = next(net.parameters()).device
    c_noise = torch.as_tensor(np.log(s) / 4, dtype=torch.float32, device=dev)
    u = net.logvar_linear(net.logvar_fourier(c_noise)).double().reshape(-1).cpu().numpy()
    sd = float(net.sigma_data)
    w = (s**2 + sd**2) / (s * sd) ** 2
    return dim * np.exp(u) / w


def profile_from_logvar(net: torch.nn.Module, sigmas: Any, dim: int, trained_range: Optional[tuple] = None) -> Profile:
    """A Profile from EDM2's logvar head alone (see :func:`logvar_mse`): no sampling, no UNet call.

    Parameters
    ----------
    net : torch.nn.Module
        An EDM2 ``Precond`` with its logvar head (``logvar_fourier``, ``logvar_linear``).
    sigmas : array_like
        The ascending sigma grid.
    dim : int
        The data dimension (C x H x W of the latents or images).
    trained_range : tuple of float, optional
        ``(sigma_lo, sigma_hi)`` where the head was trained (default the net's, else EDM2's ImageNet-512 range);
        outside it a warning names the sigmas where the head extrapolates.

    Returns
    -------
    Profile
        An exact-curve profile (zero standard errors) with ``meta["source"] == "EDM2 logvar"``."""
    return Profile.from_curve(sigmas, logvar_mse(net, sigmas, dim, trained_range), dim,
                              meta={"source": "EDM2 logvar", "model": type(net).__name__})
