"""The model-free loop: noise -> ideal (GMM / point-set) denoiser -> error, in two kernels.

``perturb`` writes the noisy rows (same Philox stream as everywhere) into a float32 scratch
buffer; ``_ideal_kernel`` then takes ``BM`` rows per program, streams over the mixture
components in tiles of ``BN`` with an online softmax (FlashAttention-style, Dao et al. 2022), and
reduces the denoised rows straight into the per-sigma accumulators. The data dimension is walked
in chunks of ``BD``; the running weighted sum of the means lives in a float32 scratch row per
query (the dimension can be thousands, too wide for registers). The noise is drawn outside this
kernel because libdevice's ``cosf`` keeps its argument-reduction array in local memory inside
this kernel's loops (a stack frame); ``perturb`` compiles it to registers. Logits use
``|x - mu|^2 = |x|^2 - 2 x.mu + |mu|^2`` in float32: their absolute error is about
``1e-7 (|x|^2 + |mu|^2) / (v + s^2)``, negligible unless points nearly coincide at the smallest
sigmas. Tiles come from :func:`config` (checked by ``kernels.audit``: no spills on sm_80..sm_90).
"""
import torch
import triton
import triton.language as tl

from .noise import perturb
from .reference import importance_perturb
from .stats import commit_rows


@triton.jit
def _ideal_kernel(means_ptr, var_ptr, logw_ptr, x0_ptr, sigma_ptr, idx_ptr, acc_ptr,
                  xs_ptr, mu_acc_ptr, w_ptr, rows, K, dim, n_sigmas,
                  BM: tl.constexpr, BN: tl.constexpr, BD: tl.constexpr):
    r = tl.program_id(0) * BM + tl.arange(0, BM)
    rmask = r < rows
    rbase = r.to(tl.int64) * dim
    s = tl.load(sigma_ptr + r, mask=rmask, other=1.0).to(tl.float32)
    s2 = s * s
    # prologue: squared norms of the noisy queries (written by perturb into xs)
    xx = tl.zeros((BM,), dtype=tl.float32)
    for d0 in range(0, dim, BD):
        d = d0 + tl.arange(0, BD)
        m2 = rmask[:, None] & (d[None, :] < dim)
        x = tl.load(xs_ptr + rbase[:, None] + d[None, :], mask=m2, other=0.0)
        xx += tl.sum(x * x, 1)
    run_max = tl.full((BM,), float("-inf"), dtype=tl.float32)
    run_sum = tl.zeros((BM,), dtype=tl.float32)
    acc_x = tl.zeros((BM,), dtype=tl.float32)
    for n0 in range(0, K, BN):
        k = n0 + tl.arange(0, BN)
        kmask = k < K
        kbase = k.to(tl.int64) * dim
        dots = tl.zeros((BM, BN), dtype=tl.float32)
        mm = tl.zeros((BN,), dtype=tl.float32)
        for d0 in range(0, dim, BD):
            d = d0 + tl.arange(0, BD)
            dmask = d < dim
            x = tl.load(xs_ptr + rbase[:, None] + d[None, :], mask=rmask[:, None] & dmask[None, :], other=0.0)
            mu = tl.load(means_ptr + kbase[:, None] + d[None, :], mask=kmask[:, None] & dmask[None, :], other=0.0)
            dots += tl.dot(x, tl.trans(mu), input_precision="ieee")
            mm += tl.sum(mu * mu, 1)
        v = tl.load(var_ptr + k, mask=kmask, other=1.0)
        t = v[None, :] + s2[:, None]
        sq = tl.maximum(xx[:, None] - 2.0 * dots + mm[None, :], 0.0)
        logit = tl.load(logw_ptr + k, mask=kmask, other=0.0)[None, :] - sq / (2.0 * t) - 0.5 * dim * tl.log(t)
        logit = tl.where(kmask[None, :], logit, float("-inf"))
        new_max = tl.maximum(run_max, tl.max(logit, 1))
        scale = tl.exp(run_max - new_max)
        p = tl.exp(logit - new_max[:, None])
        run_sum = run_sum * scale + tl.sum(p, 1)
        acc_x = acc_x * scale + tl.sum(p * v[None, :] / t, 1)
        pw = p * s2[:, None] / t
        for d0 in range(0, dim, BD):
            d = d0 + tl.arange(0, BD)
            dmask = d < dim
            m2 = rmask[:, None] & dmask[None, :]
            mu = tl.load(means_ptr + kbase[:, None] + d[None, :], mask=kmask[:, None] & dmask[None, :], other=0.0)
            a = tl.load(mu_acc_ptr + rbase[:, None] + d[None, :], mask=m2, other=0.0)
            a = a * scale[:, None] + tl.dot(pw, mu, input_precision="ieee")
            tl.store(mu_acc_ptr + rbase[:, None] + d[None, :], a, mask=m2)
        run_max = new_max
    # epilogue: denoised rows against x0, reduced into the accumulators
    err = tl.zeros((BM,), dtype=tl.float64)
    for d0 in range(0, dim, BD):
        d = d0 + tl.arange(0, BD)
        m2 = rmask[:, None] & (d[None, :] < dim)
        off = rbase[:, None] + d[None, :]
        a = tl.load(mu_acc_ptr + off, mask=m2, other=0.0)
        x = tl.load(xs_ptr + off, mask=m2, other=0.0)
        x0 = tl.load(x0_ptr + off, mask=m2, other=0.0).to(tl.float32)
        diff = tl.where(m2, (a + acc_x[:, None] * x) / run_sum[:, None] - x0, 0.0)
        err += tl.sum(diff * diff, 1).to(tl.float64)
    err = err * tl.load(w_ptr + r, mask=rmask, other=1.0)  # the row's importance weight
    commit_rows(err, r, rmask, idx_ptr, acc_ptr, n_sigmas)


def config(dim):
    """Tiles and warps for a data dimension; every choice compiles without spills on sm_80 to sm_90
    (``python -m entropic_fast.kernels.audit``): BD 64 spills; BD 32, and BD 16 since the importance weight,
    need 8 warps (BD 16 on 4 warps: 8 bytes of stack on sm_80)."""
    if dim <= 16:
        return {"BM": 16, "BN": 32, "BD": 16, "num_warps": 8}
    return {"BM": 16, "BN": 32, "BD": 32, "num_warps": 8}


def ideal_error(means, var, logw, x0, sigma, seed, row_ids, sigma_index, acc):
    """Noise (importance sampled, ``reference.importance_perturb``), GMM / point-set ideal denoiser and error
    accumulation for rows ``x0`` (rows, dim)."""
    rows, dim = x0.shape[0], x0[0].numel()
    if not rows:
        return
    means = means.reshape(means.shape[0], -1).float().contiguous()
    flat = x0.reshape(rows, -1).contiguous()
    xs, weight = importance_perturb(perturb, flat.float(), sigma.float(), seed, row_ids)
    if weight is None:
        weight = torch.ones(rows, dtype=torch.float64, device=x0.device)
    mu_acc = torch.zeros(rows, dim, dtype=torch.float32, device=x0.device)
    cfg = config(dim)
    _ideal_kernel[(triton.cdiv(rows, cfg["BM"]),)](
        means, var.float().contiguous(), logw.float().contiguous(), flat, sigma.float().contiguous(),
        sigma_index.contiguous(), acc, xs, mu_acc, weight.contiguous(), rows, means.shape[0], dim, acc.shape[1], **cfg)
