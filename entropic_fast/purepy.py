"""Pure-Python twins of the C++ extensions, for an install that could not build them (no C++17 compiler).

``_curves`` (PCHIP integration and inversion, isotonic regression, Cephes' exp and log) and ``_noise.rows`` (the
data-row draw) are written here op for op as in ``csrc/``, in IEEE float64 (numpy element-wise and Python floats
never fuse a multiply-add), so they give the same bits; the Monte-Carlo launchers fall back to the plain-torch
twins (``kernels.reference``: the same noise bits, sums equal to rounding). :func:`extension` loads an
extension or warns once, naming the cost, measured on 2 CPU cores (docs/getting-started.md): a network's profile
about as fast (its own calls dominate: the digits model within the machine's noise), an exact model's (no
network) about 2x slower, a schedule 2x slower (milliseconds).
"""
import functools
import importlib
import warnings

import numpy as np

@functools.cache
def extension(name):
    """The compiled ``entropic_fast.<name>``, or None after one warning that names the fallback and its cost (asked
    once per process: callers may ask per batch)."""
    try:
        return importlib.import_module(f"entropic_fast.{name}")
    except ImportError as e:
        warnings.warn(f"entropic_fast's C++ extension {name} is not built ({e}): using its pure-Python twin, the same "
                      "results; an exact model's profile about 2x slower, a network's about as fast. For full speed "
                      "install a wheel (`make wheel`, docs/getting-started.md) or build with a C++17 compiler "
                      "(`pip install .`)", RuntimeWarning, stacklevel=3)
        return None


# ---------------------------------------------------------------- checks (csrc/curves.cpp's, same messages)

def _fmt(v):
    return f"{v:.17g}"


def _check_grid(x):
    if x.ndim != 1:
        raise ValueError(f"grid must be 1-D, got {x.ndim} dimensions")
    if x.shape[0] < 2:
        raise ValueError(f"grid needs at least 2 points, got {x.shape[0]}")
    bad = np.flatnonzero(~np.isfinite(x))
    if bad.size:
        raise ValueError(f"grid point {bad[0]} is not finite: {_fmt(x[bad[0]])}")
    down = np.flatnonzero(~(x[1:] > x[:-1]))
    if down.size:
        i = down[0] + 1
        raise ValueError(f"grid is not strictly ascending at index {i}: {_fmt(x[i - 1])} then {_fmt(x[i])}")


def _check_batch(y, n, what, nonnegative):
    if y.ndim != 2:
        raise ValueError(f"{what} must be 2-D (curves, points), got {y.ndim} dimensions")
    if y.shape[1] != n:
        raise ValueError(f"{what} has {y.shape[1]} points per curve but the grid has {n}")
    bad = ~np.isfinite(y) | ((y < 0) if nonnegative else False)
    if bad.any():
        k = np.flatnonzero(bad.ravel())[0]
        raise ValueError(f"{what} (curve {k // n}, point {k % n}) is {_fmt(y.ravel()[k])}: values must be finite"
                         + (" and >= 0" if nonnegative else ""))


def _check_rows(q, m, what):
    if q.ndim != 2 or q.shape[0] != m:
        raise ValueError(f"{what} must be 2-D with one row per curve ({m} rows)")
    bad = np.flatnonzero(~np.isfinite(q.ravel()))
    if bad.size:
        k = bad[0]
        raise ValueError(f"{what} (row {k // q.shape[1]}, column {k % q.shape[1]}) is not finite: "
                         f"{_fmt(q.ravel()[k])}")


def _f64(a):
    return np.ascontiguousarray(a, dtype=np.float64)


# ---------------------------------------------------------------- the PCHIP interpolant (Fritsch-Carlson-Butland)

def _edge(h0, h1, m0, m1):
    d = ((2 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
    d = np.where(((d > 0) != (m0 > 0)) | (m0 == 0), 0.0, d)
    return np.where(((m0 > 0) != (m1 > 0)) & (np.abs(d) > 3 * np.abs(m0)), 3 * m0, d)


def _pchip(x, y):
    """Node slopes of each curve ``y`` (m, n) on the grid ``x`` (n)."""
    h = x[1:] - x[:-1]
    m = (y[:, 1:] - y[:, :-1]) / h
    if x.shape[0] == 2:
        return np.repeat(m, 2, axis=1)
    d = np.empty_like(y)
    m0, m1, hk, hp = m[:, :-1], m[:, 1:], h[1:], h[:-1]
    w1, w2 = 2 * hk + hp, hk + 2 * hp
    with np.errstate(all="ignore"):  # IEEE infinities, as the C++ loop meets them
        inner = (w1 + w2) / (w1 / m0 + w2 / m1)
        d[:, 1:-1] = np.where((m0 == 0) | (m1 == 0) | ((m0 > 0) != (m1 > 0)), 0.0, inner)
        d[:, 0] = _edge(h[0], h[1], m[:, 0], m[:, 1])
        d[:, -1] = _edge(h[-1], h[-2], m[:, -1], m[:, -2])
    return d


def _piece_integral(h, y0, y1, d0, d1, t):
    t2 = t * t
    t3 = t2 * t
    t4 = t3 * t
    return h * (y0 * (0.5 * t4 - t3 + t) + h * d0 * (0.25 * t4 - 2.0 / 3.0 * t3 + 0.5 * t2) +
                y1 * (t3 - 0.5 * t4) + h * d1 * (0.25 * t4 - t3 / 3.0))


def _piece_value(h, y0, y1, d0, d1, t):
    t2 = t * t
    t3 = t2 * t
    return y0 * (2 * t3 - 3 * t2 + 1) + h * d0 * (t3 - 2 * t2 + t) + y1 * (3 * t2 - 2 * t3) + h * d1 * (t3 - t2)


def _scaled(y):
    """Each curve over its largest value, and that value (1 for an all-zero curve), as ``scaled_row``."""
    top = np.maximum(y.max(axis=1), 0.0)
    top = np.where(top > 0, top, 1.0)
    return y / top[:, None], top


def _cumulative(x, ys, d):
    h = x[1:] - x[:-1]
    piece = np.maximum(0.0, 0.5 * h * (ys[:, :-1] + ys[:, 1:]) + h * h * (d[:, :-1] - d[:, 1:]) / 12.0)
    c = np.zeros_like(ys)
    np.cumsum(piece, axis=1, out=c[:, 1:])  # a sequential sum, as the C++ loop
    return c


def slopes(x, y):
    """PCHIP node slopes of each curve y (m, n) on grid x (n)."""
    x, y = _f64(x), _f64(y)
    _check_grid(x)
    _check_batch(y, x.shape[0], "integrand", False)
    return _pchip(x, y)


def cumulative(x, y):
    """Cumulative integral from x[0] of the PCHIP interpolant of each non-negative curve y (m, n)."""
    x, y = _f64(x), _f64(y)
    _check_grid(x)
    _check_batch(y, x.shape[0], "integrand", True)
    ys, top = _scaled(y)
    return _cumulative(x, ys, _pchip(x, ys)) * top[:, None]


def integral_at(x, y, xq):
    """Cumulative integral of each curve y (m, n) at its own query points xq (m, q)."""
    x, y, xq = _f64(x), _f64(y), _f64(xq)
    _check_grid(x)
    n = x.shape[0]
    _check_batch(y, n, "integrand", True)
    _check_rows(xq, y.shape[0], "query points")
    span = x[-1] - x[0]
    out_of = (xq < x[0] - 1e-12 * span) | (xq > x[-1] + 1e-12 * span)
    if out_of.any():
        raise ValueError(f"query point {_fmt(xq[out_of][0])} is outside the grid [{_fmt(x[0])}, {_fmt(x[-1])}]: "
                         "no extrapolation")
    ys, top = _scaled(y)
    d = _pchip(x, ys)
    c = _cumulative(x, ys, d)
    v = np.minimum(np.maximum(xq, x[0]), x[-1])
    i = np.clip(np.searchsorted(x, v, side="right") - 1, 0, n - 2)
    r = np.arange(y.shape[0])[:, None]
    h = x[i + 1] - x[i]
    part = np.maximum(0.0, _piece_integral(h, ys[r, i], ys[r, i + 1], d[r, i], d[r, i + 1], (v - x[i]) / h))
    return np.minimum(c[r, i] + part, c[r, i + 1]) * top[:, None]


def _invert_one(x, y, d, c, target):
    """``invert_one`` of csrc/curves.cpp: bisection-safeguarded Newton on the piece holding ``target``."""
    n = len(x)
    if target <= c[0]:
        return x[0]
    if target >= c[n - 1]:
        return x[n - 1]
    i = min(max(int(np.searchsorted(c, target, side="right")) - 1, 0), n - 2)
    h, r = x[i + 1] - x[i], target - c[i]
    lo, hi = 0.0, 1.0
    t = r / (c[i + 1] - c[i]) if c[i + 1] > c[i] else 0.5
    for _ in range(100):
        f = _piece_integral(h, y[i], y[i + 1], d[i], d[i + 1], t) - r
        if f > 0:
            hi = t
        else:
            lo = t
        if f == 0.0 or hi - lo <= 4e-16:
            break
        fp = h * _piece_value(h, y[i], y[i + 1], d[i], d[i + 1], t)
        tn = t - f / fp if fp > 0 else 0.5 * (lo + hi)
        if not lo < tn < hi:
            tn = 0.5 * (lo + hi)
        if abs(tn - t) <= 1e-16:
            t = tn
            break
        t = tn
    return x[i] + t * h


def invert(x, y, targets):
    """Points where each curve's cumulative integral reaches its targets (m, q)."""
    x, y, targets = _f64(x), _f64(y), _f64(targets)
    _check_grid(x)
    _check_batch(y, x.shape[0], "integrand", True)
    _check_rows(targets, y.shape[0], "targets")
    ys, top = _scaled(y)
    d = _pchip(x, ys)
    c = _cumulative(x, ys, d)
    out = np.empty(targets.shape)
    xs = x.tolist()
    for r in range(y.shape[0]):
        total, scale = float(c[r, -1]), float(top[r])
        whole = total * scale
        tol = 1e-12 * whole + 4 * 5e-324
        yr, dr, cr = ys[r].tolist(), d[r].tolist(), c[r].tolist()
        for j, target in enumerate(targets[r].tolist()):
            if target < -tol or target > whole + tol:
                raise ValueError(f"target {_fmt(target)} of curve {r} is outside its range [0, {_fmt(whole)}]")
            t = total if target >= whole else min(max(target / scale, 0.0), total)
            out[r, j] = _invert_one(xs, yr, dr, cr, t)
    return out


def _isotonic_row(y, w):
    val, wt, size = [], [], []
    for v, u in zip(y, w):
        val.append(v), wt.append(u), size.append(1)
        while len(val) > 1 and val[-2] > val[-1]:
            w2, v2, l2 = wt.pop(), val.pop(), size.pop()
            wsum = wt[-1] + w2
            val[-1] = (wt[-1] * val[-1] + w2 * v2) / wsum
            wt[-1] = wsum
            size[-1] += l2
    return [v for v, k in zip(val, size) for _ in range(k)]


def isotonic(y, w):
    """Weighted non-decreasing least-squares fit of each curve y (m, n) with weights w (m, n)."""
    y, w = _f64(y), _f64(w)
    if y.ndim != 2:
        raise ValueError("values must be 2-D (curves, points)")
    if w.shape != y.shape:
        raise ValueError("weights must have the shape of the values")
    _check_batch(y, y.shape[1], "values", False)
    bad = np.flatnonzero(~(np.isfinite(w) & (w > 0)).ravel())
    if bad.size:
        k, n = bad[0], y.shape[1]
        raise ValueError(f"weight (curve {k // n}, point {k % n}) is {_fmt(w.ravel()[k])}: weights must be finite "
                         "and > 0")
    return np.array([_isotonic_row(a, b) for a, b in zip(y.tolist(), w.tolist())], dtype=np.float64).reshape(y.shape)


# ---------------------------------------------------------------- Cephes exp and log (csrc/cephes.h, op for op)

_EXP_P = (1.26177193074810590878E-4, 3.02994407707441961300E-2, 9.99999999999999999910E-1)
_EXP_Q = (3.00198505138664455042E-6, 2.52448340349684104192E-3, 2.27265548208155028766E-1, 2.00000000000000000009E0)
_LOG_P = (1.01875663804580931796E-4, 4.97494994976747001425E-1, 4.70579119878881725854E0, 1.44989225341610930846E1,
          1.79368678507819816313E1, 7.70838733755885391666E0)
_LOG_Q = (1.12873587189167450590E1, 4.52279145837532221105E1, 8.29875266912776603211E1, 7.11544750618563894466E1,
          2.31251620126765340583E1)
_LOG_R = (-7.89580278884799154124E-1, 1.63866645699558079767E1, -6.41409952958715622951E1)
_LOG_S = (-3.56722798256324312549E1, 3.12093766372244180303E2, -7.69691943550460008604E2)
_SQRTH = 0.70710678118654752440
_LN2_HI, _LN2_LO = 6.93359375E-1, 2.121944400546905827679e-4


def _polevl(x, c):
    y = np.full_like(x, c[0])
    for k in c[1:]:
        y = y * x + k
    return y


def _p1evl(x, c):
    y = x + c[0]
    for k in c[1:]:
        y = y * x + k
    return y


def exp(x):
    """exp of every element, the same bits as the extension's (Cephes)."""
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(all="ignore"):
        n = np.floor(1.4426950408889634073599 * x + 0.5)
        r = x - n * 6.93145751953125E-1
        r = r - n * 1.42860682030941723212E-6
        xx = r * r
        px = r * _polevl(xx, _EXP_P)
        y = 1.0 + 2.0 * (px / (_polevl(xx, _EXP_Q) - px))
        ok = (x <= 7.09782712893383996843E2) & (x >= -745.2)
        out = np.ldexp(np.where(ok, y, 1.0), np.where(ok, n, 0).astype(np.int32))
    out = np.where(x > 7.09782712893383996843E2, np.inf, np.where(x < -745.2, 0.0, out))
    return np.where(np.isnan(x), x, out)


def _log_far(m, e):
    """Cephes' branch for exponents beyond +-2: log = 2 atanh(z / y)."""
    low = m < _SQRTH
    e = np.where(low, e - 1, e)
    z = np.where(low, m - 0.5, (m - 0.5) - 0.5)
    y = np.where(low, 0.5 * (m - 0.5) + 0.5, 0.5 * m + 0.5)
    x = z / y
    z = x * x
    z = x * (z * _polevl(z, _LOG_R) / _p1evl(z, _LOG_S))
    z = z - e * _LN2_LO
    z = z + x
    return z + e * _LN2_HI


def _log_near(m, e):
    """Cephes' branch for exponents within +-2: a rational function of ``x - 1``."""
    low = m < _SQRTH
    e = np.where(low, e - 1, e)
    x = np.where(low, np.ldexp(m, 1) - 1.0, m - 1.0)
    z = x * x
    y = x * (z * _polevl(x, _LOG_P) / _p1evl(x, _LOG_Q))
    y = np.where(e != 0, y - e * _LN2_LO, y)
    y = y - np.ldexp(z, -1)
    r = x + y
    return np.where(e != 0, r + e * _LN2_HI, r)


def log(x):
    """log of every element, the same bits as the extension's (Cephes)."""
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(all="ignore"):
        m, e = np.frexp(np.where(np.isfinite(x) & (x > 0), x, 1.0))
        e = e.astype(np.float64)
        out = np.where((e > 2) | (e < -2), _log_far(m, e), _log_near(m, e))
    out = np.where(x <= 0, np.where(x == 0, -np.inf, np.nan), out)
    return np.where(np.isnan(x) | (x == np.inf), x, out)


# ---------------------------------------------------------------- data rows (csrc/noise.cpp ``rows``)

_PHILOX_A, _PHILOX_B, _KEY_A, _KEY_B = 0xD2511F53, 0xCD9E8D57, 0x9E3779B9, 0xBB67AE85
_M32 = np.uint64(0xFFFFFFFF)
ROW_COUNTER = 0xFFFFFFFE


def _philox(key, c):
    """Ten rounds of Philox4x32 on uint64 arrays holding uint32 counters ``c`` (a list of four), 64-bit ``key``."""
    k0, k1 = key & 0xFFFFFFFF, key >> 32
    c0, c1, c2, c3 = c
    for _ in range(10):
        pb, pa = np.uint64(_PHILOX_B) * c2, np.uint64(_PHILOX_A) * c0
        c0, c1, c2, c3 = ((pb >> np.uint64(32)) ^ c1 ^ np.uint64(k0), pb & _M32,
                          (pa >> np.uint64(32)) ^ c3 ^ np.uint64(k1), pa & _M32)
        k0, k1 = (k0 + _KEY_A) & 0xFFFFFFFF, (k1 + _KEY_B) & 0xFFFFFFFF
    return c0, c1, c2, c3


def rows(key, row_ids, n):
    """Row indices into a data tensor of ``n`` rows, as the extension's ``rows`` (Lemire's multiply-shift)."""
    row_ids = np.asarray(row_ids)
    if row_ids.ndim != 1:
        raise ValueError("row_ids must be 1-D")
    if n < 1:
        raise ValueError(f"the data must have at least one row, got {n}")
    rid = row_ids.astype(np.int64).view(np.uint64)
    zero = np.zeros_like(rid)
    w0, w1, _, _ = _philox(int(key) & (2**64 - 1), [zero + np.uint64(ROW_COUNTER), rid & _M32, rid >> np.uint64(32),
                                                      zero])
    n = np.uint64(n)  # mul_hi64 of u = w0 | w1 << 32 and n, by 32-bit halves (n < 2**63)
    n0, n1 = n & _M32, n >> np.uint64(32)
    p00, p10, p01, p11 = w0 * n0, w1 * n0, w0 * n1, w1 * n1
    mid = (p00 >> np.uint64(32)) + (p10 & _M32) + p01
    return (p11 + (p10 >> np.uint64(32)) + (mid >> np.uint64(32))).astype(np.int64)


__all__ = ["extension", "slopes", "cumulative", "integral_at", "invert", "isotonic", "exp", "log", "rows"]
