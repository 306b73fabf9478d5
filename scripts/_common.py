"""Shared helpers of the training scripts: the warm-up cosine schedule, the EMA step, atomic weight files with a
JSON record beside them."""
import hashlib
import json
import math
import os
import platform
import time

import torch


def save_with_record(state, path, record):
    """Write ``state`` to ``path`` and ``record`` (plus file hash, machine, versions) to ``path``.json, atomically."""
    tmp = path + ".tmp"
    torch.save(state, tmp)
    with open(tmp, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    os.replace(tmp, path)
    record = {**record, "sha256": digest, "date": time.strftime("%Y-%m-%d"), "torch": torch.__version__,
              "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores", "threads": torch.get_num_threads()}
    with open(path[:-3] + ".json.tmp", "w") as f:
        json.dump(record, f, indent=1)
    os.replace(path[:-3] + ".json.tmp", path[:-3] + ".json")
    return record


def warmup_cosine(opt, steps):
    """Linear warm-up over a tenth of the steps (at most 200), then cosine decay to a tenth of the rate."""
    warm = max(1, min(200, steps // 10))
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: min(1.0, (i + 1) / warm) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(i / steps, 1)))))


@torch.no_grad()
def ema_update(ema, net, decay):
    """One step of the exponential moving average of ``net``'s weights into ``ema``."""
    for pe, p in zip(ema.parameters(), net.parameters()):
        pe.lerp_(p, 1 - decay)
