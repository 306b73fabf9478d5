"""What a run's parts cost, measured while it runs: wall time per row of the whole loop and of named parts.

On the CPU each part is timed by the host clock; on a GPU by CUDA events, read once when asked (the caller's
host sync), so timing adds no sync to the Monte-Carlo loop.
"""
import contextlib
import time

import torch


class Stopwatch:
    """Seconds spent in named parts (``with watch.part(name):``), and the rows they covered."""

    def __init__(self, device):
        self.cuda = device.type == "cuda"
        self.host, self.events, self.rows = {}, {}, 0

    @contextlib.contextmanager
    def part(self, name, on=True):
        """Time the block as part ``name`` (``on`` false: run it untimed)."""
        if not on:
            yield
        elif self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            yield
            end.record()
            self.events.setdefault(name, []).append((start, end))
        else:
            t = time.perf_counter()
            yield
            self.host[name] = self.host.get(name, 0.0) + time.perf_counter() - t

    def seconds(self, name):
        """Seconds spent in ``name`` so far (on a GPU a host sync)."""
        if not self.cuda:
            return self.host.get(name, 0.0)
        torch.cuda.synchronize()
        return sum(s.elapsed_time(e) for s, e in self.events.get(name, ())) / 1e3
