"""The whole model-free loop in one kernel: noise -> ideal (GMM / point-set) denoiser -> error.

A program takes ``BM`` query rows, makes their noisy inputs in-kernel (same Philox stream as
``perturb``), streams over the mixture components in tiles of ``BN`` with an online softmax
(FlashAttention-style, Dao et al. 2022), and reduces the denoised rows straight into the per-sigma
accumulators. The data dimension is walked in chunks of ``BD``; the running weighted sum of the
means lives in a float32 scratch row per query (the dimension can be thousands, too wide for
registers). Logits use ``|x - mu|^2 = |x|^2 - 2 x.mu + |mu|^2`` in float32: their absolute error
is about ``1e-7 (|x|^2 + |mu|^2) / (v + s^2)``, negligible unless points nearly coincide at the
smallest sigmas.
"""
import torch
import triton
import triton.language as tl

from .noise import _randn_rows


@triton.jit
def _ideal_kernel(means_ptr, var_ptr, logw_ptr, x0_ptr, sigma_ptr, rid_ptr, idx_ptr, acc_ptr,
                  xs_ptr, mu_acc_ptr, rows, K, dim, n_sigmas, seed,
                  BM: tl.constexpr, BN: tl.constexpr, BD: tl.constexpr):
    r = tl.program_id(0) * BM + tl.arange(0, BM)
    rmask = r < rows
    rbase = r.to(tl.int64) * dim
    s = tl.load(sigma_ptr + r, mask=rmask, other=1.0).to(tl.float32)
    s2 = s * s
    rid = tl.load(rid_ptr + r, mask=rmask, other=0).to(tl.int64)
    # prologue: noisy queries into scratch, their squared norms, zeroed mean accumulator
    xx = tl.zeros((BM,), dtype=tl.float32)
    for d0 in range(0, dim, BD):
        d = d0 + tl.arange(0, BD)
        m2 = rmask[:, None] & (d[None, :] < dim)
        off = rbase[:, None] + d[None, :]
        x0 = tl.load(x0_ptr + off, mask=m2, other=0.0).to(tl.float32)
        c0 = d[None, :] + tl.zeros((BM, BD), dtype=tl.int32)
        x = x0 + s[:, None] * _randn_rows(seed, rid[:, None], c0)
        x = tl.where(m2, x, 0.0)
        tl.store(xs_ptr + off, x, mask=m2)
        tl.store(mu_acc_ptr + off, tl.zeros((BM, BD), dtype=tl.float32), mask=m2)
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
    ok = (err == err) & (err < float("inf")) & rmask
    e = tl.where(ok, err, 0.0)
    i = tl.load(idx_ptr + r, mask=rmask, other=0)
    tl.atomic_add(acc_ptr + i, e, mask=rmask)
    tl.atomic_add(acc_ptr + n_sigmas + i, e * e, mask=rmask)
    tl.atomic_add(acc_ptr + 2 * n_sigmas + i, ok.to(tl.float64), mask=rmask)
    tl.atomic_add(acc_ptr + 3 * n_sigmas + i, 1.0 - ok.to(tl.float64), mask=rmask)


def ideal_error(means, var, logw, x0, sigma, seed, row_ids, sigma_index, acc):
    """Noise, GMM / point-set ideal denoiser and error accumulation for rows ``x0`` (rows, dim)."""
    rows, dim = x0.shape[0], x0[0].numel()
    if not rows:
        return
    means = means.reshape(means.shape[0], -1).float().contiguous()
    scratch = torch.empty(2, rows, dim, dtype=torch.float32, device=x0.device)
    bm, bn, bd = 16, 32, min(64, max(16, triton.next_power_of_2(dim)))
    _ideal_kernel[(triton.cdiv(rows, bm),)](
        means, var.float().contiguous(), logw.float().contiguous(), x0.reshape(rows, -1).contiguous(),
        sigma.float().contiguous(), row_ids.contiguous(), sigma_index.contiguous(), acc, scratch[0], scratch[1],
        rows, means.shape[0], dim, acc.shape[1], int(seed), BM=bm, BN=bn, BD=bd)
