"""Work units into batches: whole units packed (of mixed sigmas) up to a row limit, their rows gathered and moved
to the device, one batch ahead on CUDA. What makes a profile independent of the batch size (``units``)."""
import concurrent.futures

import numpy as np
import torch

from .units import UNIT, data_rows, unit_seed


class Limit:
    """The most rows a batch may hold: read anew for every batch, so it may shrink (out of memory)."""

    def __init__(self, rows):
        self.rows = rows


def drawn(data, units, seed):
    """Per unit: its work id and (row ids, sigma indices, and a sampler's draw or None), on the host; a data
    tensor's rows are drawn per batch, from the row ids, by :func:`on_device`."""
    gen = torch.Generator()
    for w, u, i, rows in units:
        draw = None if data.is_tensor else data.draw(rows, gen.manual_seed(unit_seed(seed, i, u)))
        yield w, (np.arange(w * UNIT, w * UNIT + rows, dtype=np.int64), np.full(rows, i, dtype=np.int64), draw)


def on_device(batch, data, device, dtype, key):
    """A batch's data rows, row ids, sigma indices, labels and indices in the data tensor (None for a sampler's
    draws) on ``device``: one gather and one copy each."""
    rid, idx, draw = batch
    pick = None
    if draw is None:
        src = data.source
        pick = torch.from_numpy(data_rows(key, rid, src.shape[0])).to(src.device, non_blocking=True)
        x0 = src.index_select(0, pick)  # a third of data[pick]'s time
        lab = None if data.labels is None else data.labels.index_select(0, pick.to(data.labels.device))
    else:
        x0, lab = draw
        if device.type == "cuda" and x0.device.type == "cpu":
            x0 = x0.pin_memory()  # in the prefetch thread: the copy below overlaps the device's work
    return (x0.to(device=device, dtype=dtype, non_blocking=True), torch.from_numpy(rid).to(device, non_blocking=True),
            torch.from_numpy(idx).to(device, non_blocking=True),
            None if lab is None else lab.to(device, non_blocking=True),
            None if pick is None else pick.to(device, non_blocking=True))


def _cat(parts):
    """Units' (nested) tuples of numpy arrays, tensors or None, joined row-wise."""
    first = parts[0]
    return tuple(_cat(p) if isinstance(f, tuple) else None if f is None else
                 np.concatenate(p) if isinstance(f, np.ndarray) else torch.cat(p) for f, p in zip(first, zip(*parts)))


def _slice(rows, lo, hi):
    """Rows ``lo:hi`` of a (nested) tuple of arrays or tensors."""
    return tuple(_slice(t, lo, hi) if isinstance(t, tuple) else None if t is None else t[lo:hi] for t in rows)


def _cut(w, unit, limit):
    """A unit larger than the limit, in batches of its own; only the last one finishes it."""
    rows, lo = unit[0].shape[0], 0
    while lo < rows:  # the limit may shrink between chunks
        step = limit.rows
        yield _slice(unit, lo, lo + step), ([w] if lo + step >= rows else [])
        lo += step


def packed(units, limit):
    """Pack whole units into batches of at most ``limit.rows`` rows. Yields ``(rows, finished work ids)``: a batch
    whose list is empty ends inside a unit."""
    pending, ids, n = [], [], 0
    for w, unit in units:
        rows = unit[0].shape[0]
        if pending and n + rows > limit.rows:
            yield _cat(pending), ids
            pending, ids, n = [], [], 0
        if rows > limit.rows:
            yield from _cut(w, unit, limit)
            continue
        pending.append(unit)
        ids.append(w)
        n += rows
    if pending:
        yield _cat(pending), ids


def prefetched(batches, prepare, ahead):
    """``(prepare(batch), ids)`` for each batch. With ``ahead``, ``prepare`` runs one batch ahead in a worker
    thread, so that the host's gathers and copies overlap the device's work (on CUDA; on the CPU the worker
    would only compete with the network for the same cores: measured 1.15x against 1.08x on 2 cores)."""
    if not ahead:
        for batch, ids in batches:
            yield prepare(batch), ids
        return
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="entropic-fast-prefetch") as pool:
        it = iter(batches)
        nxt = next(it, None)
        future = None if nxt is None else pool.submit(prepare, nxt[0])
        while nxt is not None:
            ids, nxt = nxt[1], next(it, None)
            rows = future.result()
            future = None if nxt is None else pool.submit(prepare, nxt[0])
            yield rows, ids
