"""Per-sigma error accumulation: squared error per row, and its 2-D power spectrum per sigma."""
import math

import torch
import triton
import triton.language as tl

from .. import sums

MAX_DFT_SIDE = 32  # larger images take torch.fft plus the binning kernel: a 64-side DFT tile spills


# the plain part's rows, as ``sums`` lays them out (its one owner)
_SUM, _SUMSQ, _COUNT, _NONFINITE = (tl.constexpr(r) for r in (sums.SUM, sums.SUMSQ, sums.COUNT, sums.NONFINITE))


@triton.jit
def commit_rows(total, rows, mask, idx_ptr, acc_ptr, n_sigmas):
    """Rows' squared errors (``mask``: the real ones) into their sigmas' sum, sum of squares and count, a non-finite
    error counted apart; returns which were finite. Every kernel that accumulates errors commits here."""
    ok = (total == total) & (total < float("inf"))
    err = tl.where(ok, total, 0.0)
    i = tl.load(idx_ptr + rows, mask=mask, other=0)
    tl.atomic_add(acc_ptr + _SUM * n_sigmas + i, err, mask=mask)
    tl.atomic_add(acc_ptr + _SUMSQ * n_sigmas + i, err * err, mask=mask)
    tl.atomic_add(acc_ptr + _COUNT * n_sigmas + i, ok.to(tl.float64), mask=mask)
    tl.atomic_add(acc_ptr + _NONFINITE * n_sigmas + i, 1.0 - ok.to(tl.float64), mask=mask)
    return ok


@triton.jit
def _commit(total, row, idx_ptr, acc_ptr, ok_ptr, n_sigmas):
    """One row's squared error committed (:func:`commit_rows`), and whether it was finite."""
    ok = commit_rows(total, row, row >= 0, idx_ptr, acc_ptr, n_sigmas)
    tl.store(ok_ptr + row, ok.to(tl.int8))  # the spectrum of a non-finite row is left out too


@triton.jit
def _row_error_kernel(d_ptr, x0_ptr, idx_ptr, acc_ptr, ok_ptr, part_ptr, dim, n_sigmas, COMPUTE: tl.constexpr,
                      BLOCK: tl.constexpr, CHUNK: tl.constexpr, SPLIT: tl.constexpr):
    """Squared error of one chunk of a row; with ``SPLIT`` the row's chunks go to ``part_ptr`` (rows, parts)
    for ``_row_finish_kernel``, else the row is one chunk and is committed here."""
    row, part = tl.program_id(0), tl.program_id(1)
    base = row.to(tl.int64) * dim
    lo = part * CHUNK
    end = tl.minimum(lo + CHUNK, dim)
    total = tl.zeros((), dtype=tl.float64)
    for start in range(lo, end, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        mask = cols < end
        diff = tl.load(d_ptr + base + cols, mask=mask, other=0.0).to(COMPUTE) \
            - tl.load(x0_ptr + base + cols, mask=mask, other=0.0).to(COMPUTE)
        total += tl.sum(diff * diff, 0).to(tl.float64)  # partial sums in COMPUTE, folded into float64
    if SPLIT:
        tl.store(part_ptr + row.to(tl.int64) * tl.num_programs(1) + part, total)
    else:
        _commit(total, row, idx_ptr, acc_ptr, ok_ptr, n_sigmas)


@triton.jit
def _row_finish_kernel(part_ptr, idx_ptr, acc_ptr, ok_ptr, parts, n_sigmas, PB: tl.constexpr):
    """Sum a row's chunks (in a fixed order) and commit it."""
    row = tl.program_id(0)
    total = tl.zeros((), dtype=tl.float64)
    for start in range(0, parts, PB):
        p = start + tl.arange(0, PB)
        total += tl.sum(tl.load(part_ptr + row.to(tl.int64) * parts + p, mask=p < parts, other=0.0), 0)
    _commit(total, row, idx_ptr, acc_ptr, ok_ptr, n_sigmas)


@triton.jit
def _spectrum_kernel(d_ptr, x0_ptr, idx_ptr, ok_ptr, ch_ptr, sh_ptr, cw_ptr, sw_ptr, spec_ptr, C, H, W,
                     HP: tl.constexpr, WP: tl.constexpr, BK: tl.constexpr):
    """|DFT(d - x0)|^2 of one (row, channel) image as matrix products: Re = C E C' - S E S',
    Im = -(S E C' + C E S') with the (symmetric) cos/sin tiles of each side."""
    row, c = tl.program_id(0), tl.program_id(1)
    base = (row.to(tl.int64) * C + c) * H * W
    m, n = tl.arange(0, HP), tl.arange(0, WP)
    emask = (m[:, None] < H) & (n[None, :] < W)
    off = base + m[:, None] * W + n[None, :]
    e = tl.load(d_ptr + off, mask=emask, other=0.0).to(tl.float32) \
        - tl.load(x0_ptr + off, mask=emask, other=0.0).to(tl.float32)
    cw = tl.load(cw_ptr + n[:, None] * WP + n[None, :])
    sw = tl.load(sw_ptr + n[:, None] * WP + n[None, :])
    out = spec_ptr + (tl.load(idx_ptr + row).to(tl.int64) * C + c) * H * W
    keep = tl.load(ok_ptr + row) != 0
    for k0 in range(0, HP, BK):
        k = k0 + tl.arange(0, BK)
        ch = tl.load(ch_ptr + k[:, None] * HP + m[None, :])
        sh = tl.load(sh_ptr + k[:, None] * HP + m[None, :])
        p = tl.dot(ch, e, input_precision="ieee")
        q = tl.dot(sh, e, input_precision="ieee")
        re = tl.dot(p, cw, input_precision="ieee") - tl.dot(q, sw, input_precision="ieee")
        im = tl.dot(q, cw, input_precision="ieee") + tl.dot(p, sw, input_precision="ieee")
        omask = (k[:, None] < H) & (n[None, :] < W)
        power = tl.where(keep, re * re + im * im, 0.0)  # NaN * 0 would be NaN: select, do not scale
        tl.atomic_add(out + k[:, None] * W + n[None, :], power.to(tl.float64), mask=omask)


@triton.jit
def _bin_power_kernel(power_ptr, idx_ptr, spec_ptr, size, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < size
    p = tl.load(power_ptr + row.to(tl.int64) * size + cols, mask=mask, other=0.0).to(tl.float64)
    i = tl.load(idx_ptr + row).to(tl.int64)
    tl.atomic_add(spec_ptr + i * size + cols, p, mask=mask)


_DFT_CACHE = {}


def _dft_tiles(n, device):
    """Orthonormal cos and sin matrices of side ``n``, zero padded to a power of two >= 16."""
    key = (n, str(device))
    if key not in _DFT_CACHE:
        pad = max(16, triton.next_power_of_2(n))
        k = torch.arange(n, dtype=torch.float64)
        ang = 2 * math.pi * torch.outer(k, k).remainder(n) / n
        tiles = []
        for f in (torch.cos, torch.sin):
            t = torch.zeros(pad, pad, dtype=torch.float32)
            t[:n, :n] = (f(ang) / math.sqrt(n)).float()
            tiles.append(t.to(device))
        _DFT_CACHE[key] = tuple(tiles)
    return _DFT_CACHE[key]


ROW_CHUNK = 4096  # elements per program of the row-error kernel: longer rows are split (measured on an H100)


def row_config(dim):
    """Block, chunk and split of the row-error kernel: rows longer than ``ROW_CHUNK`` are cut into chunks
    (one program each) so that a batch of large images fills the device."""
    block = min(1024, triton.next_power_of_2(max(dim, 16)))
    return {"BLOCK": block, "CHUNK": max(block, ROW_CHUNK), "SPLIT": dim > max(block, ROW_CHUNK)}


def finish_config(parts):
    """Block of the chunk-summing kernel."""
    return {"PB": min(256, triton.next_power_of_2(max(parts, 16)))}


def bin_config(size):
    """Block size of the binning kernel."""
    return {"BLOCK": min(1024, triton.next_power_of_2(max(size, 16)))}


def spectrum_config(h, w):
    """Tiles of the in-kernel DFT for an ``h x w`` image, or None above ``MAX_DFT_SIDE`` (torch.fft then)."""
    if max(h, w) > MAX_DFT_SIDE:
        return None
    hp, wp = max(16, triton.next_power_of_2(h)), max(16, triton.next_power_of_2(w))
    return {"HP": hp, "WP": wp, "BK": min(hp, 32)}


def bin_power(power, sigma_index, spectral):
    """Add each row of ``power`` (rows, C*H*W) to ``spectral[sigma_index[row]]``."""
    power = power.contiguous()
    rows, size = power.shape
    cfg = bin_config(size)
    if rows:
        _bin_power_kernel[(rows, triton.cdiv(size, cfg["BLOCK"]))](power, sigma_index.contiguous(), spectral, size,
                                                                   **cfg)


def accumulate_error(d, x0, sigma_index, acc, spectral=None):
    """Add each row's ``||d - x0||^2`` to ``acc`` (4, sigmas: sum, sumsq, count, non-finite) and,
    if given, ``|F(d - x0)|^2`` (orthonormal 2-D DFT over the last two axes) to ``spectral``."""
    d, x0, idx = d.contiguous(), x0.contiguous(), sigma_index.contiguous()
    rows, dim = d.shape[0], d[0].numel()
    if not rows:
        return
    compute = tl.float64 if d.dtype == x0.dtype == torch.float64 else tl.float32
    ok = torch.empty(rows, dtype=torch.int8, device=d.device)
    cfg = row_config(dim)
    parts = triton.cdiv(dim, cfg["CHUNK"])
    part = torch.empty(rows, parts, dtype=torch.float64, device=d.device) if cfg["SPLIT"] else acc
    _row_error_kernel[(rows, parts)](d, x0, idx, acc, ok, part, dim, acc.shape[1], COMPUTE=compute, **cfg)
    if cfg["SPLIT"]:
        _row_finish_kernel[(rows,)](part, idx, acc, ok, parts, acc.shape[1], **finish_config(parts))
    if spectral is None:
        return
    C, H, W = spectral.shape[1:]
    cfg = spectrum_config(H, W)
    if cfg is None:
        diff = (d.float() - x0.float()).reshape(rows, C, H, W)
        power = torch.fft.fft2(diff, norm="ortho").abs().square().reshape(rows, -1)
        bin_power(power.masked_fill(ok[:, None] == 0, 0.0), idx, spectral)
        return
    ch, sh = _dft_tiles(H, d.device)
    cw, sw = _dft_tiles(W, d.device)
    _spectrum_kernel[(rows, C)](d, x0, idx, ok, ch, sh, cw, sw, spectral, C, H, W, **cfg)
