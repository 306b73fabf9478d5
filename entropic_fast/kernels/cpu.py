"""The CPU path: the torch twins, with four steps done by the C++ extensions.

``entropic_fast._noise`` draws the noise and the noisy rows in one pass over blocks that stay in L1: the
Philox4x32-10 words (four normals per block), Triton's word-to-uniform conversion and the Box-Muller
transform with Cephes' log, sin and cos (AVX-512, AVX2 or scalar code, the same bits), then
``x0 + sigma * n``; threaded for big requests, GIL released. The twin computes the same operations in
torch, so the noise and the noisy rows are bit for bit :func:`reference.noise` and :func:`reference.perturb`
(the oracles of the tests). ``entropic_fast._stats`` accumulates the rows' squared errors in one pass
(float32 or float64 inputs without a spectrum; the twin otherwise): the same sums as the twin to rounding (it
adds the squares in float64, the twin in the inputs' precision). ``entropic_fast._ideal`` computes the
model-free path's ideal denoiser, row errors and importance weights in float64 without BLAS, so that a row's
error is the same bits whatever batch it came in and whatever the CPU (the twin's matrix products go through
MKL, which rounds a row by its position in the block on some instruction sets).
"""
import os

import numpy as np
import torch

from .. import _ideal, _noise, _stats
from . import reference
from .reference import bin_power  # noqa: F401  (the CPU launcher of this is the twin)


def _threads(elements):
    """Threads of its own only for big requests: below that, torch's spinning pool makes them slower."""
    return max(1, min(torch.get_num_threads() or os.cpu_count() or 1, elements >> 20))


def _row_ids(row_ids):
    return np.ascontiguousarray(row_ids.to(torch.int64).cpu().numpy())


def noise(seed, row_ids, dim):
    """Standard normal float32 noise ``(rows, dim)``, bit for bit :func:`reference.noise`."""
    rid = _row_ids(row_ids)
    return torch.from_numpy(_noise.normal(int(seed), rid, int(dim), _threads(rid.size * int(dim))))


def perturb(x0, sigma, seed, row_ids):
    """``x = x0 + sigma_row * n`` with Philox noise, in ``x0``'s dtype: bit for bit :func:`reference.perturb`."""
    if x0.dtype not in (torch.float32, torch.float64) or x0.device.type != "cpu" or x0.shape[0] == 0:
        return reference.add_noise(x0, sigma, noise(seed, row_ids, x0[0].numel()))
    rows = x0.shape[0]
    flat = x0.detach().reshape(rows, -1).contiguous()
    s = sigma.detach().to(device="cpu", dtype=x0.dtype).reshape(rows).contiguous()
    out = _noise.perturb(int(seed), _row_ids(row_ids), flat.numpy(), s.numpy(), _threads(flat.numel()))
    return torch.from_numpy(out).reshape(x0.shape)


def _f64(t):
    return np.ascontiguousarray(t.detach().to(device="cpu", dtype=torch.float64).reshape(t.shape[0], -1).numpy())


def ideal_error(means, var, logw, x0, sigma, seed, row_ids, sigma_index, acc):
    """Noise (importance sampled), GMM / point-set ideal denoiser and error accumulation for rows ``x0``.

    The row errors and weights come from ``_ideal`` (float64, one fixed order of operations, no BLAS): each row's
    bits depend on that row alone, on every CPU, instruction set and thread count."""
    x = reference.importance_draw(perturb, x0, sigma, seed, row_ids)
    wide = np.array(reference.importance(x0[0].numel()), dtype=np.float64).reshape(-1, 2)
    rows, dim = x0.shape[0], x0[0].numel()
    threads = max(1, min(torch.get_num_threads(), rows, (rows * means.shape[0] * dim) >> 18))
    err, weight = _ideal.errors(_f64(means), _f64(var)[:, 0], _f64(logw)[:, 0], _f64(x0), x=_f64(x),
                                sigma=_f64(sigma)[:, 0], tau=wide[:, 0].copy(), share=wide[:, 1].copy(),
                                threads=threads)
    err = torch.from_numpy(err)
    reference.add_row_errors(err * torch.from_numpy(weight) if len(wide) else err, sigma_index.cpu(), acc)


def accumulate_error(d, x0, sigma_index, acc, spectral=None):
    """Add each row's ``||d - x0||^2`` to ``acc`` (4, sigmas) as :func:`reference.accumulate_error` does."""
    same = d.dtype == x0.dtype and d.dtype in (torch.float32, torch.float64)
    if spectral is not None or not same or acc.dtype != torch.float64 or not acc.is_contiguous() \
            or d.device.type != "cpu" or x0.device.type != "cpu" or d.shape[0] == 0:
        return reference.accumulate_error(d, x0, sigma_index, acc, spectral)
    rows = d.shape[0]
    _stats.accumulate(d.detach().reshape(rows, -1).contiguous().numpy(), x0.detach().reshape(rows, -1).contiguous().numpy(),
                      sigma_index.to(torch.int64).contiguous().numpy(), acc.numpy())

