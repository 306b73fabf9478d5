"""Batched curve routines (thin numpy layer over the C++ extension ``entropic_fast._curves``).

Every function takes one strictly ascending grid ``x`` of length ``n`` and curves ``y`` of shape
``(..., n)``; the interpolant between nodes is the monotone cubic (PCHIP) of each curve.
"""
import numpy as np

from . import _curves
from .errors import InputError


def _call(fn, *args):
    try:
        return fn(*args)
    except ValueError as e:
        raise InputError(str(e)) from None


def _batch(y, n=None):
    y = np.ascontiguousarray(y, dtype=np.float64)
    if y.ndim == 0 or (n is not None and y.shape[-1] != n):
        raise InputError(f"curves have {y.shape[-1] if y.ndim else 0} points but the grid has {n} (shape {y.shape})")
    return y.reshape(-1, y.shape[-1]), y.shape[:-1]


def _grid(x):
    return np.ascontiguousarray(x, dtype=np.float64)


def slopes(x, y):
    """PCHIP node derivatives dy/dx of each curve (Fritsch-Carlson), shape of ``y``."""
    x = _grid(x)
    yb, lead = _batch(y, x.shape[0])
    return _call(_curves.slopes, x, yb).reshape(*lead, -1)


def cumulative(x, y):
    """Cumulative integral from ``x[0]`` of each non-negative curve, exact on its PCHIP interpolant."""
    x = _grid(x)
    yb, lead = _batch(y, x.shape[0])
    return _call(_curves.cumulative, x, yb).reshape(*lead, -1)


def integral_at(x, y, xq):
    """Cumulative integral of each curve at query points ``xq`` (shape ``(..., q)``, or ``(q,)`` shared)."""
    x = _grid(x)
    yb, lead = _batch(y, x.shape[0])
    q = np.ascontiguousarray(np.broadcast_to(np.asarray(xq, np.float64), (*lead, np.shape(xq)[-1])))
    return _call(_curves.integral_at, x, yb, q.reshape(yb.shape[0], -1)).reshape(*lead, -1)


def invert(x, y, targets):
    """Points ``x*`` with ``cumulative(x, y)(x*) == target`` for each curve's targets (``(..., q)``)."""
    x = _grid(x)
    yb, lead = _batch(y, x.shape[0])
    t = np.ascontiguousarray(np.broadcast_to(np.asarray(targets, np.float64), (*lead, np.shape(targets)[-1])))
    return _call(_curves.invert, x, yb, t.reshape(yb.shape[0], -1)).reshape(*lead, -1)


def isotonic(y, w=None):
    """Weighted non-decreasing least-squares fit of each curve (pool adjacent violators)."""
    yb, lead = _batch(y)
    w = np.ones_like(yb) if w is None else np.broadcast_to(np.asarray(w, np.float64), (*lead, yb.shape[-1]))
    return _call(_curves.isotonic, yb, np.ascontiguousarray(w).reshape(yb.shape)).reshape(*lead, -1)
