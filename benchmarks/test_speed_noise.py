"""Drawing the noise: the same Philox4x32-10 stream from C++ (the CPU path), the int64 torch twin and Triton
(on CUDA), beside torch.randn (another stream: the price of backend-identical noise)."""
import pytest
import torch

from conftest import CUDA, DEV, sync
from entropic_fast.kernels import cpu, reference

ROWS, DIM = 256, 3072


def triton_noise(seed, rid, dim):
    from entropic_fast.kernels import noise
    return noise.perturb(torch.zeros(len(rid), dim, device=DEV), torch.ones(len(rid), device=DEV), seed, rid)


DRAWS = {"C++ Philox + Box-Muller (CPU path)": cpu.noise, "torch twin (int64 Philox)": reference.noise,
         "torch.randn (not the same stream)": lambda seed, rid, dim: torch.randn(len(rid), dim, device=rid.device)}
if CUDA:
    DRAWS = {"Triton (Philox in-kernel)": triton_noise, "torch twin (int64 Philox)": reference.noise,
             "torch.randn (not the same stream)": DRAWS["torch.randn (not the same stream)"]}


@pytest.mark.benchmark(group=f"noise: {ROWS} x {DIM} normals")
@pytest.mark.parametrize("draw", list(DRAWS))
def test_noise(benchmark, draw):
    rid, f = torch.arange(ROWS, device=DEV), DRAWS[draw]

    def run():
        f(12345, rid, DIM)
        sync()
    benchmark(run)
