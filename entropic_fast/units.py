"""Work units and their seeds: what makes a profile independent of batch size, backend and ranks.

Work is cut into units of at most ``UNIT`` samples, one sigma each, with work id
``w = unit index * n_sigmas + sigma index``; every row has the id ``w * UNIT + row``, from which the
kernels draw its noise and :func:`data_rows` its row of a data tensor (Philox, keyed like the noise). A
sampler object's unit draws its rows with a generator of its own, seeded from ``(seed, sigma index, unit
index)``. A share of the work is the residue class ``w = index (mod count)``; a profile records its units as
a list of such classes (``[[0, 1]]`` is everything), which is what ``Profile.merge`` checks for overlap.
"""
import math

import numpy as np

from . import purepy

UNIT = 16  # 16: an adaptive pilot of 16 rows per sigma (issue 42: 32 spent ~500 of 8,331 evaluations where no band binds)
_MASK64 = (1 << 64) - 1


def _splitmix64(z):
    """One step of SplitMix64 (Steele et al. 2014): a well mixed 64-bit hash."""
    z = (z + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def unit_seed(seed, sigma_index, unit_index):
    """The 63-bit generator seed of one work unit."""
    return _splitmix64(_splitmix64(_splitmix64(int(seed) & _MASK64) ^ sigma_index) ^ unit_index) >> 1


def noise_key(seed):
    """The 63-bit Philox key of a profile's noise."""
    return _splitmix64(int(seed) & _MASK64) >> 1


def stream_key(seed, stream):
    """The 63-bit Philox key of draw ``stream`` of ``seed``: hashed twice, so that no (seed, stream) pair's key is
    another's (a key built as ``seed * C + stream`` is seed ``seed * C + stream``'s own)."""
    return _splitmix64((_splitmix64(int(seed) & _MASK64) ^ (int(stream) & _MASK64)) & _MASK64) >> 1


def data_rows(key, row_ids, n):
    """Each row id's index into a data tensor of ``n`` rows (int64 numpy): two Philox words of the counters
    ``(2**32 - 2, id & 0xffffffff, id >> 32, 0)`` under the noise key ``key`` (:func:`noise_key`), as one 64-bit
    ``u``, and ``u n / 2**64`` rounded down (Lemire 2019). One call per batch, whatever the batch holds."""
    return (purepy.extension("_noise") or purepy).rows(int(key), np.ascontiguousarray(row_ids, dtype=np.int64), int(n))


def n_units(n_sigmas, samples):
    """Number of work ids of a profile: one per sigma and unit of ``UNIT`` samples."""
    return n_sigmas * -(-samples // UNIT)


def unit_rows(w, n_sigmas, samples):
    """Rows (samples) of work unit ``w`` (an int or an integer array): ``UNIT`` except in the last, partial unit."""
    return np.minimum(UNIT, samples - (w // n_sigmas) * UNIT)


def work_units(n_sigmas, samples, shard=(0, 1), done=()):
    """``(work id, unit index, sigma index, rows)`` of this shard not in ``done``, unit-major
    (every sigma advances together), generated lazily."""
    index, count = shard
    done = set(done)
    for w in range(index, n_units(n_sigmas, samples), count):
        if w not in done:
            u, i = divmod(w, n_sigmas)
            yield w, u, i, min(UNIT, samples - u * UNIT)


def _in_class(index, count, lo, hi):
    """How many ``w`` in ``[lo, hi)`` have ``w = index (mod count)``."""
    first = lo + (index - lo) % count
    return len(range(first, hi, count))


def shard_rows(n_sigmas, samples, shard=(0, 1)):
    """Total rows of one shard's units, computed without listing them."""
    index, count = shard
    total = n_units(n_sigmas, samples)
    rows = UNIT * _in_class(index, count, 0, total)
    short = UNIT * (total // n_sigmas) - samples  # rows missing from each unit of the last block
    return rows - short * _in_class(index, count, total - n_sigmas, total)


def _first_common(a, n, b, m):
    """The smallest ``w >= 0`` with ``w = a (mod n)`` and ``w = b (mod m)``, or None (CRT)."""
    g = math.gcd(n, m)
    if (b - a) % g:
        return None
    mg = m // g
    t = ((b - a) // g * pow(n // g, -1, mg)) % mg if mg > 1 else 0
    return (a % n + n * t) % (n * mg)


def overlap(classes_a, classes_b, total):
    """True when two unit sets (lists of ``[index, count]``) share a work id below ``total``."""
    for a, n in classes_a:
        for b, m in classes_b:
            w = _first_common(a, n, b, m)
            if w is not None and w < total:
                return True
    return False


def union(classes_a, classes_b):
    """The union of two disjoint unit sets, ``[[0, 1]]`` when together they cover every residue."""
    classes = sorted({tuple(c) for c in list(classes_a) + list(classes_b)})
    period = math.lcm(*(n for _, n in classes))
    if period <= 1 << 16:
        hit = {r for a, n in classes for r in range(a % n, period, n)}
        if len(hit) == period:
            return [[0, 1]]
    return [list(c) for c in classes]


def plan_units(plan, shard=(0, 1), done=()):
    """``(work id, unit index, sigma index, UNIT)`` of the units of a plan (``plan[i]`` units at sigma ``i``)
    in this shard and not in ``done``, unit-major like :func:`work_units`; unit ``u`` of sigma ``i`` has
    the same id (``u * n + i``), hence the same draws, in every plan."""
    index, count = shard
    plan = np.asarray(plan, np.int64)
    n, done = plan.size, set(done)
    for u in range(int(plan.max(initial=0))):
        for i in np.flatnonzero(plan > u).tolist():
            w = u * n + i
            if w % count == index and w not in done:
                yield w, u, i, UNIT


def plan_rows(plan, shard=(0, 1)):
    """Rows of this shard's units of a plan."""
    return UNIT * sum(1 for _ in plan_units(plan, shard))
