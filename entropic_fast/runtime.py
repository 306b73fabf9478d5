"""The resumable run, written once: what a profile's run (``estimate.Run``) and a comparison's (``comparison.Run``,
and so a tuning search's) share.

A run accumulates into an *accumulator* (an object with ``parts``, a dict of float64 tensors on the run's device,
and ``like()``, zeroed parts of the same layout: ``sums.Sums``, ``metrics.Moments``) and keeps, with it, the ids
of its finished work units. :class:`Resumable` owns that pair and everything around it: the commit of a finished
unit's rows with its id in one step that signals cannot split, the loop over batches, checkpoints (written when
due, on any exception, at the end; resumed with every check of ``checkpoint``: signature, arrays, ids, counts),
the finite checks, SIGINT/SIGTERM held to batch boundaries, and the all-reduce over ranks. A client says what
determines its result (``signature``), how many rows a unit holds (``unit_rows``), what the counts of its
accumulator must be (``counts``), and runs its rounds (``rounds``) by calling :meth:`Resumable.loop` with its
batches and its ``step``.
"""
import os
import time

import numpy as np
import torch

from . import checkpoint as ckpt
from . import signals

CHECK_SECONDS = 10.0  # between two looks for non-finite values (a host sync) when no checkpoint is due


def added(acc, more):
    """A new accumulator holding ``acc + more`` (both left as they are)."""
    total = acc.like()
    for k, v in total.parts.items():
        v += acc.parts[k]
        v += more.parts[k]
    return total


class Resumable:
    """The committed pair (accumulator, finished ids), its checkpoints and the loop that fills it. Subclasses give
    ``signature()`` (JSON: what determines the result), ``units()`` (the size of the id space), ``unit_rows(ids)``,
    ``counts``, ``check_finite()`` and ``rounds(bar)``; ``state``/``restore`` where a plan keeps arrays of its own."""

    run_name = "run"  # what a mismatching checkpoint's message says wrote it

    def __init__(self, acc, checkpointing, share, dist):
        self.committed, self.pending = (acc, []), acc.like()
        self.checkpointing, self.share, self.dist = checkpointing, share, dist
        self.since, self.last_save = 0, time.monotonic()
        self.last_check = self.last_save

    @property
    def acc(self):
        """The accumulator of the finished units (with :attr:`finished`, one consistent pair: :meth:`commit`)."""
        return self.committed[0]

    @property
    def finished(self):
        """The ids of the finished units, in the order they finished."""
        return self.committed[1]

    # -- what a client gives

    def state(self):
        """A plan's own arrays in the checkpoint (none by default)."""
        return {}

    def restore(self, state, finished):
        """Take a checkpoint's plan arrays back (nothing by default)."""

    def counts(self, fin, arrays):
        """``(counted, expected, where)``: what the accumulator ``arrays`` count per group and what the finished ids
        ``fin`` hold, and a function naming group ``i`` for the message; checked equal on resume."""
        raise NotImplementedError

    # -- commit, save, resume

    def commit(self, ids):
        """The pending rows of finished units and their ids into the pair, together: the new pair is built aside and
        stored in one step, so an exception raised at any instant (a signal handler's KeyboardInterrupt included)
        leaves the old pair or the new one, never sums that count units the ids do not hold."""
        with signals.held():
            self.committed = (added(self.acc, self.pending), [*self.finished, *ids])  # one attribute store: atomic
            for v in self.pending.parts.values():
                v.zero_()
        self.since += len(ids)

    def arrays(self):
        """The accumulator on the host (numpy float64): what a checkpoint holds."""
        return {k: v.detach().cpu().numpy() for k, v in self.acc.parts.items()}

    def save(self):
        if self.checkpointing.path is not None:
            ckpt.write(self.checkpointing.path, self.signature(), self.arrays(), self.finished, self.state())
            self.since, self.last_save = 0, time.monotonic()

    def resume(self):
        """Pick up a checkpoint of this very run, if there is one: its accumulator, finished units and plan state,
        each checked (``checkpoint.read``) and the counts against the finished units."""
        path = self.checkpointing.path
        if path is None or not os.path.exists(path):
            return
        shapes = {k: tuple(v.shape) for k, v in self.acc.parts.items()}
        fin, arrays, state = ckpt.read(path, self.signature(), shapes, tuple(self.state()), units=self.units(),
                                       share=self.share, run=self.run_name)
        got, rows, where = self.counts(fin, arrays)
        if not np.array_equal(got, rows):
            i = int(np.argmax(got != rows))
            ckpt.refuse(path, f"counts {got[i]:g} samples {where(i)} but its finished units hold {rows[i]:g}")
        self.restore(state, fin.tolist())
        for k, v in self.acc.parts.items():
            v.copy_(torch.as_tensor(arrays[k]))
        self.committed = (self.acc, fin.tolist())

    def checkpoint_or_check(self, ids):
        """After a batch: checkpoint when due (at a unit boundary), else check for non-finite values when due."""
        ck, now = self.checkpointing, time.monotonic()
        if ck.path is not None and ids and (self.since >= ck.every or now - self.last_save >= ck.seconds):
            self.check_finite()
            self.save()
        elif now - self.last_check >= CHECK_SECONDS:
            self.check_finite()
            self.last_check = now

    # -- the loop

    def loop(self, batches, step, bar):
        """Each ``(work, ids)`` of ``batches``: ``step(work)`` fills :attr:`pending` and returns its rows; the units
        ``ids`` finished with it are committed; a checkpoint or a check when due; signals taken here only."""
        for work, ids in batches:
            bar.update(step(work))
            if ids:
                self.commit(ids)
            self.checkpoint_or_check(ids)
            signals.poll()

    def execute(self, make_bar):
        """Resume, run the client's rounds under the bar ``make_bar(rows done)`` makes (after the resume: a plan's
        size may be the checkpoint's) with signals deferred to batch boundaries and a checkpoint written whatever
        stops them, save, check, and sum the accumulator over the ranks."""
        self.resume()
        bar = make_bar(int(sum(self.unit_rows(np.asarray(self.finished, np.int64)))))
        with signals.deferring(), torch.no_grad():
            try:
                self.rounds(bar)
            except BaseException:
                self.save()
                raise
            if self.since:
                self.save()
            self.check_finite()  # after the save: nothing computed is lost to a refusal
        if self.dist is not None:
            for v in self.acc.parts.values():
                torch.distributed.all_reduce(v)
        return self.acc
