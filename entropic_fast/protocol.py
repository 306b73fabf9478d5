"""The denoiser and data protocol (docs/design.md section 1), read in one place.

A denoiser is ``denoiser(x, sigma) -> x0_hat`` or ``denoiser(x, sigma, labels)``; it may declare ``device``,
``dtype``, ``description``, ``check_labels(labels)`` (checked once, before a run) and ``mixture`` (the
analytic models' ``(means, var, log weights)``: the run may then compute the ideal denoiser itself). Data is a
tensor ``(N, *shape)`` (rows drawn with replacement, ``labels`` row for row) or an object with
``sample(n, generator=None)`` returning rows or ``(rows, labels)``, and perhaps ``labels`` (all of them, for
the check) and ``moments()`` (exact mean and covariance). Numpy arrays are tensors. Nothing else in the
library probes these objects.
"""
import inspect

import numpy as np
import torch

from .errors import InputError


def _tensor(a):
    return torch.from_numpy(np.ascontiguousarray(a)) if isinstance(a, np.ndarray) else a


def sampled(drawn, what="data.sample"):
    """``(rows, labels or None)`` of what a sampler object returned: rows, or ``(rows, labels)``."""
    x0, lab = drawn if isinstance(drawn, tuple) and len(drawn) == 2 else (drawn, None)
    x0 = torch.as_tensor(x0)
    if lab is not None:
        lab = torch.as_tensor(lab)
        if lab.ndim < 1 or lab.shape[0] != x0.shape[0]:
            raise InputError(f"{what} returned {x0.shape[0]} rows but labels of shape {tuple(lab.shape)}")
    return x0, lab


def _check_tensor(data, labels):
    """Validate a data tensor and its labels once, before the loop."""
    if data.ndim < 2 or data.shape[0] < 1 or data[0].numel() < 1:
        raise InputError(f"data must be a tensor (N, *shape) with N >= 1 and non-empty rows, got shape {tuple(data.shape)}")
    if not data.is_floating_point():
        hint = (": images of 0..255 are scaled to [-1, 1] first, x / 127.5 - 1, as the model was trained on them"
                if data.dtype == torch.uint8 else ": convert it to floats scaled as the model was trained")
        raise InputError(f"data must be floating point, got {data.dtype}{hint}")
    # a finite sum has no inf or nan in it (and costs no temporary); an overflowing one is looked at element by element
    if not bool(torch.isfinite(data.sum())) and not bool(torch.isfinite(data).all()):
        bad = int((~torch.isfinite(data.reshape(data.shape[0], -1))).any(1).nonzero()[0, 0])
        raise InputError(f"data has non-finite values (first in row {bad})")
    if labels is not None and (not torch.is_tensor(labels) or labels.ndim < 1 or labels.shape[0] != data.shape[0]):
        raise InputError(f"labels must be a tensor with one row per data row ({data.shape[0]}), got "
                         f"{getattr(labels, 'shape', type(labels).__name__)}")
    return data[:1], labels is not None


def _check_sampler(data, labels):
    """Validate a sampler object by one draw of one row."""
    if not hasattr(data, "sample"):
        raise InputError(f"data must be a tensor (N, *shape) or have .sample(n, generator), got {type(data).__name__}")
    if labels is not None:
        raise InputError("labels go with a tensor `data` row for row; a sampler object returns its own "
                         "(rows, labels) from .sample")
    example, lab = sampled(data.sample(1, generator=torch.Generator().manual_seed(0)), "data.sample(1)")
    if example.ndim < 2 or example.shape[0] != 1 or not example.is_floating_point():
        raise InputError(f"data.sample(1) must return a floating tensor of shape (1, *shape), got "
                         f"{example.dtype} {tuple(example.shape)}")
    if not bool(torch.isfinite(example).all()):
        raise InputError(f"data.sample returned non-finite values ({type(data).__name__})")
    return example, lab is not None


def check_data(data, labels):
    """``(one example row, labelled)`` of validated ``data`` and ``labels``."""
    return _check_tensor(data, labels) if torch.is_tensor(data) else _check_sampler(data, labels)


class Data:
    """What a run reads of its data: rows (a tensor, or draws of a sampler), labels, and exact moments."""

    def __init__(self, data, labels=None):
        self.source, self.labels = _tensor(data), _tensor(labels)
        self.example, self.labelled = check_data(self.source, self.labels)
        self.is_tensor = torch.is_tensor(self.source)
        moments = None if self.is_tensor else getattr(self.source, "moments", None)
        self.moments = moments if callable(moments) else None

    @property
    def dim(self):
        return self.example[0].numel()

    def all_labels(self):
        """Every label, for a denoiser's one check before the run (None where the data cannot list them)."""
        return self.labels if self.labels is not None else getattr(self.source, "labels", None)

    def draw(self, rows, generator, what="data.sample"):
        """A sampler object's draw of ``rows`` rows with ``generator``: ``(rows, labels or None)``."""
        x0, lab = sampled(self.source.sample(rows, generator=generator), what)
        if x0.device.type == "cpu" and not bool(torch.isfinite(x0).all()):  # host data: no device sync
            raise InputError(f"data.sample returned non-finite values ({type(self.source).__name__})")
        return x0, lab


def describe(denoiser):
    """A denoiser's name in messages and records."""
    return getattr(denoiser, "description", None) or type(denoiser).__name__


def declared_dtype(denoiser):
    """The floating dtype a denoiser declares (``.dtype``) or of a module's parameters, or None."""
    declared = getattr(denoiser, "dtype", None)
    if isinstance(declared, torch.dtype) and declared.is_floating_point:
        return declared
    if isinstance(denoiser, torch.nn.Module):
        for p in denoiser.parameters():
            if p.is_floating_point():
                return p.dtype
    return None


def declared_range(denoiser):
    """``(sigma_min, sigma_max)`` a denoiser declares it is defined on (diffusers' VP adapter: its scheduler's
    range), or None."""
    lo, hi = (getattr(denoiser, k, None) for k in ("sigma_min", "sigma_max"))
    real = (int, float, np.floating, np.integer)
    if isinstance(lo, real) and isinstance(hi, real) and not isinstance(lo, bool) and 0 < lo < hi < float("inf"):
        return float(lo), float(hi)
    return None


def declared_device(denoiser):
    """The device a denoiser declares (``.device``) or of a module's first parameter, or None."""
    declared = getattr(denoiser, "device", None)
    if isinstance(declared, torch.device):
        return declared
    if isinstance(denoiser, torch.nn.Module):
        for p in denoiser.parameters():
            return p.device
    return None


def mixture(denoiser):
    """``(means, var, log weights)`` of an analytic mixture model used as the denoiser, or None."""
    return getattr(denoiser, "mixture", None)


def _check_takes_labels(denoiser, labels_kwarg=None):
    """Refuse, before any work, a denoiser that cannot take the labels the data carries."""
    try:  # a module's __call__ takes anything: read its forward
        sig = inspect.signature(denoiser.forward if isinstance(denoiser, torch.nn.Module) else denoiser)
    except (TypeError, ValueError):  # a builtin or C callable: no signature to read
        return
    try:
        sig.bind(None, None, None) if labels_kwarg is None else sig.bind(None, None, **{labels_kwarg: None})
    except TypeError:
        if labels_kwarg is not None:
            raise InputError(f"the denoiser {describe(denoiser)} takes no keyword {labels_kwarg!r} "
                             f"(labels_kwarg); its signature is {sig}") from None
        raise InputError(f"the data carries labels but the denoiser {describe(denoiser)} takes no third argument: "
                         "for an unconditional model drop them (labels=None; a dataset reader with labels=False, "
                         "--no-labels on the command line)") from None


def _check_takes_two(denoiser):
    """Refuse, before any work, a denoiser that cannot be called as ``denoiser(x, sigma)``."""
    if not callable(denoiser):
        raise InputError(f"the denoiser must be callable as denoiser(x, sigma) -> D(x), got {type(denoiser).__name__}")
    try:
        sig = inspect.signature(denoiser.forward if isinstance(denoiser, torch.nn.Module) else denoiser)
    except (TypeError, ValueError):  # a builtin or C callable: no signature to read
        return
    try:
        sig.bind(None, None)
    except TypeError:
        raise InputError(f"the denoiser {describe(denoiser)} cannot be called as denoiser(x, sigma): its signature is "
                         f"{sig}; wrap the model (ef.adapters: edm, diffusers, flow, comfyui) or write the two-argument "
                         "function") from None


def not_a_tensor(out, x):
    """What to say of a denoiser that returned ``out``, not a tensor (a diffusers model's output object, say)."""
    hint = ""
    if hasattr(out, "sample") or type(out).__module__.split(".")[0] == "diffusers":
        hint = ("; a diffusers model returns an output object and predicts noise at a timestep: wrap it with "
                "ef.adapters.diffusers.denoiser(unet, scheduler)")
    return (f"the denoiser returned {type(out).__name__}, not a tensor of the input's shape {tuple(x.shape)} "
            f"(the protocol: denoiser(x, sigma) -> D(x)){hint}")


def failed_first_call(e, x, sigma):
    """What to say when the denoiser's first call raised ``e`` on the rows ``x``: the shapes it was given and, for
    rows of two dimensions that a convolution refused, the channel dimension they lack."""
    row = tuple(x.shape[1:])
    hint = ""
    if len(row) == 2 and any(w in str(e) for w in ("conv", "3D", "4D", "channels")):
        hint = (f"; rows of shape {row} have no channel dimension: give the data as (N, 1, {row[0]}, {row[1]}) "
                "(data[:, None])")
    return (f"the denoiser failed on its first batch, x of shape {tuple(x.shape)} (the data's rows) and sigma of "
            f"shape {tuple(sigma.shape)}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}{hint}")


def check_labelling(denoiser, data, labels_kwarg):
    """A labelled run's denoiser takes the labels (by ``labels_kwarg`` where given); all labels checked once, before
    the loop (by the denoiser's ``check_labels``, where it has one), so the loop never syncs with the device for them."""
    if labels_kwarg is not None and (not isinstance(labels_kwarg, str) or not labels_kwarg.isidentifier()):
        raise InputError(f"labels_kwarg must be a keyword name such as 'cond', got {labels_kwarg!r}")
    if not data.labelled:
        _check_takes_two(denoiser)
    if data.labelled:
        _check_takes_labels(denoiser, labels_kwarg)
        every = data.all_labels()
        check = getattr(denoiser, "check_labels", None)
        if every is not None and callable(check):
            check(every)


def _padded(fn):
    """``fn`` called on batches padded to the largest batch seen, so a compiled network sees one shape."""
    width = [0]

    def call(x, sigma, lab):
        rows = x.shape[0]
        width[0] = max(width[0], rows)
        if rows == width[0]:
            return fn(x, sigma, lab)
        pad = [t if t is None else torch.cat([t, t[:1].expand(width[0] - rows, *t.shape[1:])])
               for t in (x, sigma, lab)]
        return fn(*pad)[:rows]
    return call


def network(denoiser, compile=False, channels_last=False, labels_kwarg=None):
    """The denoiser as a run calls it, ``(x, sigma, labels_or_None) -> D``: compiled and channels-last on request."""
    if channels_last and isinstance(denoiser, torch.nn.Module):
        denoiser.to(memory_format=torch.channels_last)
    fn = torch.compile(denoiser, dynamic=False) if compile else denoiser

    def call(x, sigma, lab):
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if lab is None:
            return fn(x, sigma)
        return fn(x, sigma, lab) if labels_kwarg is None else fn(x, sigma, **{labels_kwarg: lab})
    return _padded(call) if compile else call
