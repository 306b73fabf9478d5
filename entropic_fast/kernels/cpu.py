"""The CPU path: the torch twins, with two steps done by the C++ extensions.

``entropic_fast._noise`` computes Philox4x32-10 and Triton's word-to-uniform conversion (exact integer
and float32 operations, AVX-512 or AVX2 where the CPU has them, GIL released); the Box-Muller transform is the
twin's own torch code. So the noise is bit for bit ``reference.noise`` (the oracle of the tests),
about 15x faster than its int64 tensor arithmetic. ``entropic_fast._stats`` accumulates the rows'
squared errors in one pass (float32 or float64 inputs without a spectrum; the twin otherwise): the
same sums as the twin to rounding (it adds the squares in float64, the twin in the inputs' precision).
"""
import os

import torch

from .. import _noise, _stats
from . import reference
from .reference import bin_power  # noqa: F401  (the CPU launcher of this is the twin)


def noise(seed, row_ids, dim):
    """Standard normal float32 noise ``(rows, dim)``, bit for bit :func:`reference.noise`."""
    rid = row_ids.to(torch.int64).cpu().numpy()
    # threads of its own only for big requests: below that, torch's spinning pool makes them slower
    threads = max(1, min(torch.get_num_threads() or os.cpu_count() or 1, rid.size * int(dim) >> 20))
    u1, theta = _noise.uniforms(int(seed), rid, int(dim), threads)
    u, th = torch.from_numpy(u1), torch.from_numpy(theta)
    # reference.box_muller in place, op for op (the same kernels, so the same bits): no temporaries
    return u.log_().mul_(-2.0).sqrt_().mul_(th.cos_())


def perturb(x0, sigma, seed, row_ids):
    """``x = x0 + sigma_row * n`` with Philox noise; returned in ``x0``'s dtype."""
    return reference.add_noise(x0, sigma, noise(seed, row_ids, x0[0].numel()))


def ideal_error(means, var, logw, x0, sigma, seed, row_ids, sigma_index, acc):
    """Noise (importance sampled), GMM / point-set ideal denoiser and error accumulation for rows ``x0``."""
    x, weight = reference.importance_perturb(perturb, x0, sigma, seed, row_ids)
    reference.ideal_error_of(means, var, logw, x0, x, sigma, sigma_index, acc, weight)


def accumulate_error(d, x0, sigma_index, acc, spectral=None):
    """Add each row's ``||d - x0||^2`` to ``acc`` (4, sigmas) as :func:`reference.accumulate_error` does."""
    same = d.dtype == x0.dtype and d.dtype in (torch.float32, torch.float64)
    if spectral is not None or not same or acc.dtype != torch.float64 or not acc.is_contiguous() \
            or d.device.type != "cpu" or x0.device.type != "cpu" or d.shape[0] == 0:
        return reference.accumulate_error(d, x0, sigma_index, acc, spectral)
    rows = d.shape[0]
    _stats.accumulate(d.detach().reshape(rows, -1).contiguous().numpy(), x0.detach().reshape(rows, -1).contiguous().numpy(),
                      sigma_index.to(torch.int64).contiguous().numpy(), acc.numpy())

