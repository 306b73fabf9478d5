"""Shared helpers of the training scripts: atomic weight files with a JSON record beside them."""
import hashlib
import json
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
