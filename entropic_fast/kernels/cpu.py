"""The CPU path: the torch twins, with the Philox words drawn by the C++ extension ``entropic_fast._noise``.

The C++ part computes Philox4x32-10 and Triton's word-to-uniform conversion (exact integer and float32
operations, threaded, GIL released); the Box-Muller transform is the twin's own torch code. So the noise
is bit for bit ``reference.noise`` (the oracle of the tests), about 10x faster than its int64 tensor
arithmetic.
"""
import os

import torch

from .. import _noise
from . import reference
from .reference import accumulate_error, bin_power  # noqa: F401  (the CPU launchers of these are the twins)


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
    """Noise, GMM / point-set ideal denoiser and error accumulation for rows ``x0`` (rows, dim)."""
    reference.ideal_error_of(means, var, logw, x0, perturb(x0, sigma, seed, row_ids), sigma, sigma_index, acc)
