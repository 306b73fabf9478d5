"""Batched curve routines (thin numpy layer over the C++ extension ``entropic_fast._curves``, or its twin in
``purepy`` where it was not built).

Every function takes one strictly ascending grid ``x`` of length ``n`` and curves ``y`` of shape
``(..., n)``; the interpolant between nodes is the monotone cubic (PCHIP) of each curve.
"""
import numpy as np

from . import purepy
from .errors import InputError

_curves = purepy.extension("_curves") or purepy


def exp(x):
    """``exp`` of every element in float64, the same bits on every CPU (Cephes; numpy's differs by CPU)."""
    out = _curves.exp(np.asarray(x, dtype=np.float64))
    return out[()] if out.ndim == 0 else out


def log(x):
    """``log`` of every element in float64, the same bits on every CPU (Cephes; numpy's differs by CPU)."""
    out = _curves.log(np.asarray(x, dtype=np.float64))
    return out[()] if out.ndim == 0 else out


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


def _fornberg(z, x, m):
    """Weights of the order-``m`` derivative at ``z`` from values at the nodes ``x`` (Fornberg 1988)."""
    n = len(x)
    c = np.zeros((n, m + 1))
    c1, c4 = 1.0, x[0] - z
    c[0, 0] = 1.0
    for i in range(1, n):
        mn, c2, c5, c4 = min(i, m), 1.0, c4, x[i] - z
        for j in range(i):
            c3 = x[i] - x[j]
            c2 *= c3
            if j == i - 1:
                for k in range(mn, 0, -1):
                    c[i, k] = c1 * (k * c[i - 1, k - 1] - c5 * c[i - 1, k]) / c2
                c[i, 0] = -c1 * c5 * c[i - 1, 0] / c2
            for k in range(mn, 0, -1):
                c[j, k] = (c4 * c[j, k] - k * c[j, k - 1]) / c3
            c[j, 0] = c4 * c[j, 0] / c3
        c1 = c2
    return c[:, m]


def derivative_matrix(x, width=5):
    """``D`` with ``D @ y`` the derivative at the nodes from ``width``-point stencils (exact for polynomials
    of degree ``width - 1``; one-sided at the ends), on any strictly ascending grid."""
    x = _grid(x)
    n = x.size
    width = min(width, n)
    d = np.zeros((n, n))
    for i in range(n):
        lo = min(max(i - width // 2, 0), n - width)
        d[i, lo:lo + width] = _fornberg(x[i], x[lo:lo + width], 1)
    return d


def _penalty(x, order):
    """Rows of scaled ``order``-th divided differences: ``||P z||^2`` approximates the integral of ``z^(order)^2``."""
    n = x.size
    p = np.zeros((n - order, n))
    for i in range(n - order):
        seg = x[i:i + order + 1]
        p[i, i:i + order + 1] = _fornberg(seg.mean(), seg, order) * np.sqrt(seg[-1] - seg[0])
    return p


def smooth(x, y, w, order=2, lams=np.logspace(-10, 6, 65), penalty=None):
    """Weighted penalised least squares (Whittaker-Henderson) of one curve on the grid ``x``: minimises
    ``sum w (y - z)^2 + lam sum_i p_i (P z)_i^2`` with ``lam`` chosen by Stein's unbiased risk estimate, the
    weights being inverse noise variances (a weight of 0 is floored at 1e-10 of the largest) and ``p`` the
    ``penalty`` weights of the rows of ``P`` (default 1; :func:`adaptive_penalty`). Returns ``(z, lam)``.

    Demmler-Reinsch form: with ``M = W^-1/2 P'P W^-1/2 = Q diag(m) Q'``, the fit is
    ``z = W^-1/2 Q diag(1 / (1 + lam m)) Q' W^1/2 y`` and the hat matrix's trace ``sum 1 / (1 + lam m)``,
    so one eigendecomposition serves every ``lam`` (no inverse is formed: its far entries are denormal)."""
    x, y, w = _grid(x), np.asarray(y, np.float64), np.asarray(w, np.float64)
    if y.shape != x.shape or w.shape != x.shape or not np.all(np.isfinite(w) & (w >= 0)) or not w.max() > 0:
        raise InputError("smooth needs finite values and finite weights >= 0 (one > 0) on the grid")
    sw = np.sqrt(np.maximum(w, 1e-10 * w.max()))
    pt = _penalty(x, order) / sw[None, :]
    if penalty is not None:
        pt = pt * np.sqrt(np.asarray(penalty, np.float64))[:, None]
    m, q = np.linalg.eigh(pt.T @ pt)
    m = np.maximum(m, 0.0)
    c = q.T @ (sw * y)
    best = None
    for lam in lams:
        f = 1.0 / (1.0 + lam * m)
        z = (q @ (f * c)) / sw
        risk = float(np.sum(w * (y - z) ** 2) + 2 * np.sum(f))
        if best is None or risk < best[0]:
            best = (risk, z, float(lam))
    return best[1], best[2]


def adaptive_penalty(x, z, order=2, width=1.2, floor=0.01):
    """Penalty weights for :func:`smooth` from a first fit ``z`` (spatially adaptive penalties, Ruppert and Carroll
    2000): ``1 / (r + floor max r)^2``, ``r`` the roughness ``|P z|`` averaged over a window ``width`` wide in ``x``;
    scaled to mean 1. Where the curve bends little it is smoothed more."""
    x, z = _grid(x), np.asarray(z, np.float64)
    pen = _penalty(x, order)
    rough = np.abs(pen @ z)
    centre = np.array([x[i:i + order + 1].mean() for i in range(rough.size)])
    near = np.abs(centre[:, None] - centre[None, :]) <= width / 2
    r = (near @ rough) / near.sum(1)
    if not r.max() > 1e-12 * (np.abs(pen) @ np.abs(z)).max():  # a straight line up to rounding: nothing to adapt to
        return np.ones_like(r)
    p = 1.0 / (r / r.max() + floor) ** 2
    return p / p.mean()


def nnls(a, b, iters=None):
    """``x >= 0`` minimising ``||a x - b||`` (Lawson and Hanson 1974, the active-set method)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    m, n = a.shape
    x, passive = np.zeros(n), np.zeros(n, bool)
    w = a.T @ (b - a @ x)
    tol = 10 * np.finfo(float).eps * np.linalg.norm(a, 1) * max(m, n)
    for _ in range(iters or 3 * n):
        if passive.all() or w[~passive].max(initial=-np.inf) <= tol:
            break
        passive[np.argmax(np.where(passive, -np.inf, w))] = True
        while True:
            z = np.zeros(n)
            z[passive] = np.linalg.lstsq(a[:, passive], b, rcond=None)[0]
            if z[passive].min() > 0:
                x = z
                break
            neg = passive & (z <= 0)
            alpha = np.min(x[neg] / (x[neg] - z[neg]))
            x = x + alpha * (z - x)
            passive &= x > tol
            x[~passive] = 0.0
        w = a.T @ (b - a @ x)
    return x
