"""Kernel launchers and their dispatch: Triton on CUDA (or under TRITON_INTERPRET=1), torch otherwise.

Every backend offers the same launchers: ``perturb``, ``accumulate_error``, ``bin_power``,
``ideal_error``. ``reference`` holds the plain-torch twin of each (the tests' oracle); on the CPU
``cpu`` runs the twins with the noise drawn and added in C++ (bit for bit the same numbers); without the
C++ extensions (``purepy``) the twins themselves.
"""
import functools
import importlib.util
import os
import types

from .. import purepy
from ..errors import InputError
from . import reference

BACKENDS = ("auto", "triton", "torch")


def interpreting():
    """True when Triton kernels run in its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


@functools.cache
def _has_triton():
    return importlib.util.find_spec("triton") is not None


@functools.cache
def _compiled():
    """True when the CPU launchers' extensions were built (else the twins run, after one warning)."""
    return all([purepy.extension(name) is not None for name in ("_noise", "_stats", "_ideal")])


def launchers(backend, device):
    """The namespace of launchers for ``backend`` on ``device`` (a torch.device)."""
    if backend not in BACKENDS:
        raise InputError(f"unknown backend {backend!r}; known backends: {', '.join(BACKENDS)}")
    has_triton = _has_triton()
    if backend == "auto":
        backend = "triton" if device.type == "cuda" and has_triton else "torch"
    if backend == "torch":
        if device.type == "cpu" and _compiled():
            from . import cpu
            return cpu
        return reference
    if not has_triton:
        raise InputError("backend='triton' needs the triton package (pip install triton)")
    if device.type != "cuda" and not interpreting():
        raise InputError(f"backend='triton' runs on CUDA tensors, got device {device}; set TRITON_INTERPRET=1 "
                         "to run the kernels in Triton's (slow) CPU interpreter")
    from . import ideal, noise, stats
    return types.SimpleNamespace(perturb=noise.perturb, accumulate_error=stats.accumulate_error,
                                 bin_power=stats.bin_power, ideal_error=ideal.ideal_error)
