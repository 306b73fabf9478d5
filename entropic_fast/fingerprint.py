"""Fingerprints of what determines a profile: a denoiser's weights, the data, the labels.

A checkpoint records them and refuses to resume under a mismatch, and a profile keeps them so
that ``merge`` can refuse profiles of different models or data. What is hashed:

- an object with a ``fingerprint()`` method: what that returns (the readers of ``data`` do this);
- arrays: dtype, shape and every byte; tensors: dtype, shape and two position-weighted 64-bit
  checksums of every byte, computed where the tensor lives (a GPU's weights are never copied to
  the host; the same tensor gives the same digest on any device);
- an ``nn.Module``: its class, and the name, dtype, shape and bytes of every parameter and buffer;
- a function or lambda: its qualified name, its bytecode and constants, and, recursively, what its
  closure cells and default arguments hold; a bound method: its object and its function;
  ``functools.partial``: its function and arguments;
- any other object: its class and, recursively, its attributes (``__dict__``), to a depth of 4.

Numbers, strings and containers of them are hashed by value. What cannot be fingerprinted is an
opaque object's hidden state (a C extension object, globals a function reads, files it opens):
it is hashed by its type alone, and ``complete`` comes back False.
"""
import functools
import hashlib
import types

import numpy as np
import torch

_DEPTH = 4


class _Hasher:
    def __init__(self):
        self.h = hashlib.blake2b(digest_size=12)
        self.complete = True
        self.seen = set()

    def put(self, *parts):
        for p in parts:
            self.h.update(str(p).encode())
            self.h.update(b"\x1f")

    def tensor(self, t):
        t = t.detach()
        self.put("tensor", t.dtype, tuple(t.shape))
        if t.numel():
            self.put(*checksum(t))

    def array(self, a):
        self.put("array", a.dtype.str, a.shape)
        if a.dtype.hasobject:
            self.complete = False
            return
        self.h.update(np.ascontiguousarray(a).tobytes())

    def code(self, co):
        self.put("code", co.co_name, co.co_code.hex(), co.co_names, co.co_varnames)
        for c in co.co_consts:
            if isinstance(c, types.CodeType):
                self.code(c)
            else:
                self.put(repr(c))

    def value(self, obj, depth=_DEPTH):
        if obj is None or isinstance(obj, (bool, int, float, complex, str, bytes, np.generic, torch.dtype,
                                           torch.device)):
            self.put(type(obj).__name__, repr(obj))
            return
        if id(obj) in self.seen:
            self.put("seen", type(obj).__name__)
            return
        self.seen.add(id(obj))
        own = getattr(obj, "fingerprint", None)
        if callable(own) and not isinstance(obj, type):
            self.put("own", type(obj).__qualname__, own())
        elif torch.is_tensor(obj):
            self.tensor(obj)
        elif isinstance(obj, np.ndarray):
            self.array(obj)
        elif isinstance(obj, torch.nn.Module):
            self.put("module", type(obj).__module__, type(obj).__qualname__)
            for name, t in list(obj.named_parameters()) + list(obj.named_buffers()):
                self.put(name)
                self.tensor(t)
        elif isinstance(obj, (list, tuple)):
            self.put(type(obj).__name__, len(obj))
            for v in obj:
                self.value(v, depth - 1)
        elif isinstance(obj, dict):
            self.put("dict", len(obj))
            for k in sorted(obj, key=repr):
                self.put(repr(k))
                self.value(obj[k], depth - 1)
        elif isinstance(obj, functools.partial):
            self.put("partial")
            self.value(obj.func, depth)
            self.value(obj.args, depth)
            self.value(obj.keywords, depth)
        elif isinstance(obj, types.MethodType):
            self.put("method")
            self.value(obj.__func__, depth)
            self.value(obj.__self__, depth)
        elif isinstance(obj, types.FunctionType):
            self.put("function", obj.__module__, obj.__qualname__)
            self.code(obj.__code__)
            self.value(obj.__defaults__, depth)
            self.value(obj.__kwdefaults__, depth)
            for cell in obj.__closure__ or ():
                try:
                    self.value(cell.cell_contents, depth - 1)
                except ValueError:  # an empty cell
                    self.put("empty cell")
            extra = {k: v for k, v in vars(obj).items() if k != "description"}
            if extra:
                self.value(extra, depth - 1)
        elif isinstance(obj, (types.ModuleType, type)):
            self.put("named", getattr(obj, "__module__", ""), getattr(obj, "__qualname__", obj.__name__))
        elif depth > 0 and hasattr(obj, "__dict__"):
            self.put("object", type(obj).__module__, type(obj).__qualname__)
            self.value(dict(vars(obj)), depth - 1)
        else:
            self.put("opaque", type(obj).__module__, type(obj).__qualname__)
            self.complete = False


_CHUNK = 1 << 20  # 64-bit words per step: the cached weights take 16 MB per device
_ODD = (0x9E3779B97F4A7C15, 0xC4CEB9FE1A85EC53)  # weights: W_j[k] = ODD_j * (2k + 1) mod 2^64, odd
_WEIGHTS = {}


def _signed(x):
    x %= 1 << 64
    return x - (1 << 64) if x >= 1 << 63 else x


def _weights(device):
    if device not in _WEIGHTS:
        k = torch.arange(_CHUNK, dtype=torch.int64, device=device) * 2 + 1
        _WEIGHTS[device] = torch.stack([k * _signed(c) for c in _ODD])
    return _WEIGHTS[device]


def checksum(t):
    """Two position-weighted sums (mod 2^64) of ``t``'s bytes read as 64-bit words, on ``t``'s device.

    Integer sums are exact in any order, so the result does not depend on the device or the
    reduction; a change of any one word changes both sums (its weights are odd)."""
    b = t.reshape(-1).contiguous()
    b = b.to(torch.uint8) if b.dtype == torch.bool else b.view(torch.uint8)
    if b.numel() % 8:
        b = torch.cat([b, b.new_zeros(8 - b.numel() % 8)])
    elif b.storage_offset() % 8:  # a view that starts between words (data[1:] of float32 rows) is read from a copy
        b = b.clone()
    w = b.view(torch.int64)
    weights = _weights(w.device)
    total = torch.zeros(2, dtype=torch.int64, device=w.device)
    for lo in range(0, w.numel(), _CHUNK):  # W_j[lo + k] = W_j[k] + 2 lo ODD_j
        v = w[lo:lo + _CHUNK]
        shift = torch.tensor([_signed(2 * lo * c) for c in _ODD], dtype=torch.int64, device=w.device)
        total += (v * weights[:, :v.numel()]).sum(1) + v.sum() * shift
    return tuple(total.tolist())


def fingerprint(obj):
    """``(hex digest, complete)`` of ``obj``: see the module docstring for what is hashed."""
    h = _Hasher()
    h.value(obj)
    return h.h.hexdigest(), h.complete
