"""Noisy inputs ``x = x0 + sigma_row * n`` with ``n`` drawn in-kernel (Philox, four normals per block)."""
import torch
import triton
import triton.language as tl


@triton.jit
def _randn_rows(seed, rid, start, BLOCK: tl.constexpr):
    """Normal float32 elements ``start .. start + BLOCK`` (``start`` a multiple of 4) of row ``rid``: element ``j``
    is normal ``j % 4`` of the Philox block at counters ``(j // 4, rid low, rid high, 0)``; twin: reference.noise."""
    g = (start // 4 + tl.arange(0, BLOCK // 4)).to(tl.uint32)
    zero = g * 0
    c1 = zero + (rid & 0xFFFFFFFF).to(tl.uint32)
    c2 = zero + (rid >> 32).to(tl.uint32)
    w0, w1, w2, w3 = tl.philox(seed, g, c1, c2, zero)
    n0, n1 = tl.pair_uniform_to_normal(tl.uint_to_uniform_float(w0), tl.uint_to_uniform_float(w1))
    n2, n3 = tl.pair_uniform_to_normal(tl.uint_to_uniform_float(w2), tl.uint_to_uniform_float(w3))
    # join(join(n0, n2), join(n1, n3))[i, q, p] is n_(2q + p): row-major, element 4 i + k holds n_k
    return tl.reshape(tl.join(tl.join(n0, n2), tl.join(n1, n3)), (BLOCK, ))


@triton.jit
def _perturb_kernel(x0_ptr, sigma_ptr, rid_ptr, out_ptr, dim, seed, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    start = tl.program_id(1) * BLOCK
    cols = start + tl.arange(0, BLOCK)
    mask = cols < dim
    rid = tl.load(rid_ptr + row).to(tl.int64)
    s = tl.load(sigma_ptr + row)
    x0 = tl.load(x0_ptr + row.to(tl.int64) * dim + cols, mask=mask)
    x = x0 + s * _randn_rows(seed, rid, start, BLOCK)
    tl.store(out_ptr + row.to(tl.int64) * dim + cols, x.to(out_ptr.dtype.element_ty), mask=mask)


def config(dim):
    """Block size for rows of ``dim`` elements (one program per row and block)."""
    return {"BLOCK": min(1024, triton.next_power_of_2(max(dim, 16)))}


def perturb(x0, sigma, seed, row_ids):
    """``x = x0 + sigma_row * n`` with Philox noise; returned in ``x0``'s dtype."""
    x0 = x0.contiguous()
    rows, dim = x0.shape[0], x0[0].numel()
    out = torch.empty_like(x0)
    sigma = sigma.to(torch.float64 if x0.dtype == torch.float64 else torch.float32).contiguous()
    cfg = config(dim)
    if rows:
        _perturb_kernel[(rows, triton.cdiv(dim, cfg["BLOCK"]))](x0, sigma, row_ids.contiguous(), out, dim, int(seed),
                                                                **cfg)
    return out
