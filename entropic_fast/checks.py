"""Argument checks shared by the public entry points: numpy scalars are ordinary arguments, and
anything else wrong raises an InputError naming the argument and its value."""
import numbers
import operator
import os

import numpy as np
import torch

from .errors import InputError


def integer(value, name, least=None):
    """``value`` as a Python int (numpy integers accepted, floats and bools refused)."""
    if isinstance(value, (bool, np.bool_)):
        raise InputError(f"{name} must be an integer, got {value!r}")
    try:
        out = operator.index(value)
    except TypeError:
        if isinstance(value, numbers.Real) and float(value).is_integer():
            out = int(value)  # 3.0 is taken as 3; 2.5 and nan are refused below
        else:
            raise InputError(f"{name} must be an integer, got {value!r}") from None
    if least is not None and out < least:
        raise InputError(f"{name} must be an integer >= {least}, got {value!r}")
    return out


def path(value, name):
    """``value`` as a file system path (str, bytes or os.PathLike), else an InputError naming it."""
    try:
        return os.fspath(value)
    except TypeError:
        raise InputError(f"{name} must be a file path, got {value!r}") from None


def numbers64(value, name):
    """``value`` as a float64 tensor (numbers, arrays, tensors), else an InputError naming it."""
    try:
        return torch.as_tensor(value, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise InputError(f"{name} must be numbers (a number, an array or a tensor), got {value!r}") from None


def seed(value, name="seed"):
    """``value`` as an int in ``[0, 2**64)``: the seeds a run's streams are keyed by (-1 would wrap to 2**64 - 1)."""
    out = integer(value, name)
    if not 0 <= out < 2**64:
        raise InputError(f"{name} must be a whole number in [0, 2**64), got {value!r}")
    return out


def flag(value, name, allow_none=False):
    """``value`` as a Python bool (numpy bools accepted; 0, 1, strings and None refused, None kept where allowed)."""
    if value is None and allow_none:
        return None
    if not isinstance(value, (bool, np.bool_)):
        raise InputError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def real(value, name, positive=False, finite=True, allow_none=False):
    """``value`` as a Python float (numpy scalars, 0-d arrays and 0-d real tensors accepted: k-diffusion's
    model wrappers hold ``sigma_min`` / ``sigma_max`` as 0-d tensors)."""
    if value is None and allow_none:
        return None
    if hasattr(value, "detach") and getattr(value, "ndim", None) == 0 and not value.is_complex() \
            and value.dtype != torch.bool:
        value = value.detach().cpu().numpy()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.ndarray)) \
            or np.ndim(value) != 0:
        raise InputError(f"{name} must be a real number, got {value!r}")
    out = float(value)
    if finite and not np.isfinite(out):
        raise InputError(f"{name} must be finite, got {out!r}")
    if positive and not out > 0:
        raise InputError(f"{name} must be > 0, got {out!r}")
    return out


def finite_array(value, name, ndim=None):
    """``value`` (any array-like, torch tensors included) as a contiguous float64 ndarray of finite values."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    try:
        a = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be numbers (an array), got {type(value).__name__}") from None
    if ndim is not None and a.ndim != ndim:
        raise InputError(f"{name} must be {ndim}-D, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        bad = a[~np.isfinite(a)]
        raise InputError(f"{name} must be finite, got {bad[:3].tolist()}")
    return np.ascontiguousarray(a)


def one_of(value, name, allowed):
    """``value`` if it is one of ``allowed`` (compared as strings), else an InputError listing them."""
    if not isinstance(value, str) or value not in allowed:
        raise InputError(f"{name} must be one of {', '.join(map(str, allowed))}; got {value!r}")
    return value


def optional(module, extra):
    """Import an optional dependency, or raise ImportError saying which extra installs it."""
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"this needs {module.split('.')[0]}, which the core install leaves out: "
                          f"pip install \"entropic_fast[{extra}]\"") from None


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (the ``plots`` extra)."""
    matplotlib = optional("matplotlib", "plots")
    matplotlib.use("Agg")
    return optional("matplotlib.pyplot", "plots")
