"""Plain-torch twins of every kernel launcher, same signatures: the CPU path and the tests' oracle.

Noise is Philox4x32-10 (Salmon et al. 2011, Random123) in int64 tensor arithmetic, with Triton's
Box-Muller transform of ``tl.pair_uniform_to_normal`` computed with Cephes' log, sin and cos (four normals per
Philox block): the C++ CPU path draws the same bits, the Triton kernels the same numbers to an ulp or two (their
log, sin and cos round differently).
"""
import math

import torch

from .. import sums
from .mixture import IS_MAX_DIM, IS_WIDE, gmm_denoise, importance  # noqa: F401  (the twins' own)

PHILOX_A, PHILOX_B = 0xD2511F53, 0xCD9E8D57
KEY_A, KEY_B = 0x9E3779B9, 0xBB67AE85
MASK32 = 0xFFFFFFFF
UNIFORM_SCALE = 4.6566127342e-10  # Triton's uint_to_uniform_float scale for 32-bit words


def _mulhilo(a, b):
    """High and low 32-bit words of ``a * b`` (``a`` a 32-bit constant, ``b`` int64 holding uint32).

    The product is below 2**64, so its int64 wrap-around holds exactly its bits."""
    p = b * a
    return (p >> 32) & MASK32, p & MASK32


def philox(key, c0, c1, c2, c3, rounds=10):
    """Philox4x32 with a 64-bit ``key`` on four int64 tensors of uint32 counters."""
    k0, k1 = key & MASK32, (key >> 32) & MASK32
    for _ in range(rounds):
        hi_b, lo_b = _mulhilo(PHILOX_B, c2)
        hi_a, lo_a = _mulhilo(PHILOX_A, c0)
        c0, c1, c2, c3 = hi_b ^ c1 ^ k0, lo_b, hi_a ^ c3 ^ k1, lo_a
        k0, k1 = (k0 + KEY_A) & MASK32, (k1 + KEY_B) & MASK32
    return c0, c1, c2, c3


def _uniform(word):
    """Triton's uint_to_uniform_float: a uint32 word (in int64) to float32 in [0, 1)."""
    signed = torch.where(word >= 2**31, word - 2**32, word)
    signed = torch.where(signed < 0, -signed - 1, signed)
    return signed.to(torch.float32) * torch.tensor(UNIFORM_SCALE, dtype=torch.float32)


_LOG_POLY = (7.0376836292e-2, -1.1514610310e-1, 1.1676998740e-1, -1.2420140846e-1, 1.4249322787e-1,
             -1.6668057665e-1, 2.0000714765e-1, -2.4999993993e-1, 3.3333331174e-1)


def cephes_log(x):
    """Cephes' single-precision log (S. Moshier) of float32 ``x`` in [1e-7, 1), op for op as ``csrc/noise.cpp``."""
    bits = x.view(torch.int32)
    e = ((bits >> 23) & 0xFF) - 126
    m = ((bits & 0x007FFFFF) | 0x3F000000).view(torch.float32)  # the mantissa in [0.5, 1)
    low = m < 0.707106781186547524
    fe = (e - low.to(torch.int32)).to(torch.float32)
    m = torch.where(low, m + m, m) - 1.0
    z = m * m
    y = torch.full_like(m, _LOG_POLY[0])
    for c in _LOG_POLY[1:]:
        y = y * m + c
    y = y * m * z + fe * -2.12194440e-4 + z * -0.5
    return (m + y) + fe * 0.693359375


def cephes_sincos(x):
    """Cephes' single-precision sin and cos of float32 ``x`` in [0, 2 pi), one shared reduction, op for op as
    ``csrc/noise.cpp``."""
    j = (x * 1.27323954473516).to(torch.int32)  # x >= 0: truncation is floor
    j = j + (j & 1)
    y = j.to(torch.float32)
    r = ((x - y * 0.78515625) - y * 2.4187564849853515625e-4) - y * 3.77489497744594108e-8
    z = r * r
    sin = ((z * -1.9515295891e-4 + 8.3321608736e-3) * z - 1.6666654611e-1) * z * r + r
    cos = ((z * 2.443315711809948e-5 - 1.388731625493765e-3) * z + 4.166664568298827e-2) * z * z - z * 0.5 + 1.0
    swap = (j & 2) != 0  # octants 2 and 6 (near pi/2, 3 pi/2): each takes the other's polynomial
    s, c = torch.where(swap, cos, sin), torch.where(swap, sin, cos)
    return torch.where((j & 4) != 0, -s, s), torch.where(((j + 2) & 4) != 0, -c, c)


def box_muller(u1, theta):
    """``tl.pair_uniform_to_normal`` of the clamped first uniform and ``2 pi`` times the second, with Cephes'
    log, sin and cos: ``(r cos theta, r sin theta)``, bit for bit the C++ CPU path's (Triton's own log, sin and
    cos round differently, by an ulp or two)."""
    # torch's vectorised float32 sqrt is not correctly rounded (0.6% of values an ulp off); the float64 root of a
    # float32, rounded to float32, is (a root is never a float32 midpoint)
    r = torch.sqrt((cephes_log(u1) * -2.0).double()).float()
    sin, cos = cephes_sincos(theta)
    return r * cos, r * sin


def normals(words):
    """The four normals of one Philox block ``(w0, w1, w2, w3)``: Box-Muller of ``(w0, w1)`` and of ``(w2, w3)``."""
    two_pi = torch.tensor(6.283185307179586, dtype=torch.float32)
    out = []
    for a, b in (words[:2], words[2:]):
        out += box_muller(torch.clamp_min(_uniform(a), 1.0e-7), two_pi * _uniform(b))
    return out


def noise(seed, row_ids, dim, chunk=1 << 14):
    """Standard normal float32 noise ``(rows, dim)`` keyed by ``(seed, row id, element index)``: element ``j`` is
    normal ``j % 4`` of the Philox block at counters ``(j // 4, row id low, row id high, 0)``.

    Drawn ``chunk`` blocks at a time, so that the int64 temporaries of Philox stay small."""
    rid = row_ids.to(torch.int64).reshape(-1)
    groups = -(-dim // 4)
    out = torch.empty(rid.shape[0] * groups, 4, dtype=torch.float32, device=rid.device)
    for lo in range(0, out.shape[0], chunk):
        flat = torch.arange(lo, min(lo + chunk, out.shape[0]), dtype=torch.int64, device=rid.device)
        r = rid[flat // groups]
        out[lo:lo + flat.numel()] = torch.stack(normals(philox(int(seed), flat % groups, r & MASK32, r >> 32,
                                                               torch.zeros_like(flat))), 1)
    return out.reshape(-1, groups * 4)[:, :dim].contiguous()


def _compute_dtype(*tensors):
    return torch.float64 if all(t.dtype == torch.float64 for t in tensors) else torch.float32


def add_noise(x0, sigma, n):
    """``x0 + sigma_row * n`` in float32 (float64 for float64 data), returned in ``x0``'s dtype."""
    ct = _compute_dtype(x0)
    col = sigma.to(ct).reshape(-1, *([1] * (x0.ndim - 1)))
    return (x0.to(ct) + col * n.to(ct).reshape(x0.shape)).to(x0.dtype)  # two roundings (addcmul may fuse them)


def perturb(x0, sigma, seed, row_ids):
    """``x = x0 + sigma_row * n`` with Philox noise; returned in ``x0``'s dtype."""
    return add_noise(x0, sigma, noise(seed, row_ids.to(x0.device), x0[0].numel()))


def accumulate_error(d, x0, sigma_index, acc, spectral=None, weight=None):
    """Add each row's ``||d - x0||^2`` (times its importance ``weight``, if given) to ``acc`` (4, sigmas: sum,
    sumsq, count, non-finite) and, if given, ``|F(d - x0)|^2`` (orthonormal 2-D DFT over the last two axes) to
    ``spectral``."""
    ct = _compute_dtype(d, x0)
    diff = (d.to(ct) - x0.to(ct)).flatten(1)
    err = torch.linalg.vecdot(diff, diff).double()  # one fused pass: no squared copy
    bad = add_row_errors(err if weight is None else err * weight, sigma_index, acc)
    if spectral is not None:  # rows with a non-finite error are left out here too
        power = torch.fft.fft2(diff.reshape(d.shape[0], *spectral.shape[1:]), norm="ortho").abs().square()
        power = power.reshape(d.shape[0], -1).masked_fill(bad[:, None], 0.0)
        bin_power(power, sigma_index, spectral)


def add_row_errors(err, sigma_index, acc):
    """Add the float64 row errors ``err`` to ``acc`` (4, sigmas: sum, sumsq, count, non-finite) at ``sigma_index``;
    returns the rows whose error is not finite (counted in the last row, left out of the others)."""
    bad = ~torch.isfinite(err)
    ok = (~bad).double()
    err = err.nan_to_num(0.0, 0.0, 0.0) * ok
    rows = dict(zip((sums.SUM, sums.SUMSQ, sums.COUNT, sums.NONFINITE), (err, err * err, ok, 1.0 - ok)))
    acc.index_add_(1, sigma_index, torch.stack([rows[r] for r in range(sums.PLAIN)]))
    return bad


def bin_power(power, sigma_index, spectral):
    """Add each row of ``power`` (rows, C*H*W) to ``spectral[sigma_index[row]]``."""
    spectral.view(spectral.shape[0], -1).index_add_(0, sigma_index, power.double())


ROW_BLOCK = 32  # the ideal denoiser always sees blocks of this many rows


def noise_scale(seed, row_ids):
    """Each row's factor on sigma for its noise (1 or a ``tau`` of ``IS_WIDE``), chosen by a Philox word of the
    row's own (block counter ``2**32 - 1``, which no noise block uses: element ``j`` takes block ``j // 4``)."""
    rid = row_ids.to(torch.int64)
    word = philox(int(seed), torch.full_like(rid, MASK32), rid & MASK32, rid >> 32, torch.zeros_like(rid))[2]
    scale, edge = torch.ones(rid.shape, dtype=torch.float64, device=rid.device), 0.0
    for tau, share in IS_WIDE:
        pick = (word >= int(edge * 2**32)) & (word < int((edge + share) * 2**32))
        scale = torch.where(pick, tau, scale)
        edge += share
    return scale


def importance_weight(x, x0, sigma):
    """``p / q`` of each row's realised noise ``x - x0``: ``p = N(0, s^2 I)``, ``q`` the defensive mixture."""
    r = (x.double() - x0.double()).flatten(1)
    rho2 = torch.linalg.vecdot(r, r) / sigma.double() ** 2
    q = 1.0 - sum(share for _, share in IS_WIDE)
    for tau, share in IS_WIDE:  # share * p_tau / p
        q = q + share * torch.exp(0.5 * rho2 * (1.0 - tau ** -2) - r.shape[1] * math.log(tau))
    return 1.0 / q


def importance_draw(perturb, x0, sigma, seed, row_ids):
    """The model-free path's noisy rows, drawn by ``perturb`` (any back-end's): at ``tau * sigma`` for the rows
    :func:`noise_scale` picks, in dimensions up to ``IS_MAX_DIM``; plainly above."""
    if not importance(x0[0].numel()):
        return perturb(x0, sigma, seed, row_ids)
    return perturb(x0, sigma * noise_scale(seed, row_ids.to(sigma.device)).to(sigma.dtype), seed, row_ids)


def importance_perturb(perturb, x0, sigma, seed, row_ids):
    """``(x, weight or None)``: :func:`importance_draw`'s rows and their :func:`importance_weight` (None for plain
    draws)."""
    x = importance_draw(perturb, x0, sigma, seed, row_ids)
    return x, (importance_weight(x, x0, sigma) if importance(x0[0].numel()) else None)


def ideal_error(means, var, logw, x0, sigma, seed, row_ids, sigma_index, acc):
    """Noise (importance sampled, ``importance_perturb``), GMM / point-set ideal denoiser and error accumulation
    for rows ``x0`` (rows, dim)."""
    x, weight = importance_perturb(perturb, x0, sigma, seed, row_ids)
    ideal_error_of(means, var, logw, x0, x, sigma, sigma_index=sigma_index, acc=acc, weight=weight)


def ideal_error_of(means, var, logw, x0, x, sigma, *, sigma_index, acc, weight=None):
    """The ideal denoiser at the noisy rows ``x`` and its error against ``x0`` (times ``weight``), accumulated.

    The denoiser runs on blocks of exactly ``ROW_BLOCK`` rows (the last one zero-padded), so that
    every matrix product has the same shape whatever the batch: a row's result, bit for bit, does
    not depend on the batch it came in (BLAS picks its kernels by shape)."""
    flat, rows = x.reshape(x.shape[0], -1), x.shape[0]
    out = torch.empty_like(flat)
    for lo in range(0, rows, ROW_BLOCK):
        xb, sb = flat[lo:lo + ROW_BLOCK], sigma[lo:lo + ROW_BLOCK]
        k = xb.shape[0]
        if k < ROW_BLOCK:
            xb = torch.cat([xb, xb.new_zeros(ROW_BLOCK - k, xb.shape[1])])
            sb = torch.cat([sb, sb.new_ones(ROW_BLOCK - k)])
        out[lo:lo + k] = gmm_denoise(means, var, logw, xb, sb)[:k]
    accumulate_error(out.reshape(x.shape), x0, sigma_index, acc, weight=weight)
