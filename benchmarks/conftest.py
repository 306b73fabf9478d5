"""Speed suites (pytest-benchmark): ``make bench`` times them; ``make test`` runs each once (--benchmark-disable)."""
import os
import sys

import torch

HERE = os.path.dirname(__file__)
sys.path[:0] = [HERE, os.path.join(HERE, "..", "tests")]
CUDA = torch.cuda.is_available()
DEV = torch.device("cuda" if CUDA else "cpu")


def sync():
    """Wait for the device, so that a timing covers the work and not only its launch."""
    if CUDA:
        torch.cuda.synchronize()
