"""Independent numpy/scipy reference for entropic_fast.curves (oracle for tests and benchmarks)."""
import numpy as np
from scipy.interpolate import PchipInterpolator
from scipy.optimize import brentq


def cumulative(x, y):
    """Cumulative integral of scipy's PCHIP interpolant, one curve at a time."""
    y = np.atleast_2d(y)
    return np.stack([PchipInterpolator(x, row).antiderivative()(x) for row in y])


def invert(x, y, targets):
    """Root of ``F(x*) = target`` by Brent's method on scipy's antiderivative."""
    y, targets = np.atleast_2d(y), np.atleast_2d(targets)
    out = np.empty(targets.shape)
    for r, (row, ts) in enumerate(zip(y, targets)):
        F = PchipInterpolator(x, row).antiderivative()
        for j, t in enumerate(ts):
            if t <= 0:
                out[r, j] = x[0]
            elif t >= F(x[-1]):
                out[r, j] = x[-1]
            else:
                out[r, j] = brentq(lambda v: F(v) - t, x[0], x[-1], xtol=1e-14, rtol=1e-15)
    return out


def isotonic(y, w):
    """Non-decreasing weighted fit by repeatedly pooling the first adjacent violating pair of blocks."""
    blocks = [[float(v), float(wi), 1] for v, wi in zip(y, w)]
    i = 0
    while i < len(blocks) - 1:
        if blocks[i][0] > blocks[i + 1][0]:
            a, b = blocks[i], blocks.pop(i + 1)
            a[0] = (a[0] * a[1] + b[0] * b[1]) / (a[1] + b[1])
            a[1] += b[1]
            a[2] += b[2]
            i = max(i - 1, 0)
        else:
            i += 1
    return np.concatenate([np.full(n, v) for v, _, n in blocks])
