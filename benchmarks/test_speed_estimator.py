"""The Monte-Carlo loop against bare calls of the same network on prepared inputs (its overhead)."""
import statistics
import time

import pytest
import torch

import entropic_fast as ef
from conftest import DEV, sync


class SmallConvNet(torch.nn.Module):
    """A small conv denoiser (EDM-style skip) on 1x16x16 images, for timing only."""

    def __init__(self, width=32):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(2, width, 3, padding=1), torch.nn.SiLU(),
            torch.nn.Conv2d(width, width, 3, padding=1), torch.nn.SiLU(),
            torch.nn.Conv2d(width, 1, 3, padding=1))

    def forward(self, x, sigma):
        s = sigma.view(-1, 1, 1, 1)
        h = torch.cat([x / (1 + s**2).sqrt(), s.log().expand_as(x) / 4], 1)
        return x / (1 + s**2) + s / (1 + s**2).sqrt() * self.net(h)


N_SIGMAS, SAMPLES, BATCH = 32, 256, 256


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    net = SmallConvNet().eval().to(DEV)
    data = torch.randn(2000, 1, 16, 16, device=DEV)
    grid = ef.sigma_grid(N_SIGMAS)
    n = N_SIGMAS * SAMPLES
    x0 = data[torch.randint(len(data), (n,), device=DEV)]
    sig = torch.as_tensor(grid, dtype=torch.float32, device=DEV).repeat_interleave(SAMPLES)
    return net, data, grid, x0 + sig.view(-1, 1, 1, 1) * torch.randn_like(x0), sig


def profile(net, data, grid, xs, sig, control="auto"):
    ef.profile(net, data, grid, samples=SAMPLES, batch_size=BATCH, progress=False, control=control)
    sync()


def plain(net, data, grid, xs, sig):
    profile(net, data, grid, xs, sig, control=None)


def bare(net, data, grid, xs, sig):
    with torch.no_grad():
        for i in range(0, len(xs), BATCH):
            net(xs[i:i + BATCH], sig[i:i + BATCH])
    sync()


@pytest.mark.benchmark(group=f"estimator: small conv net, 1x16x16, {N_SIGMAS * SAMPLES} evaluations, batch {BATCH}")
@pytest.mark.parametrize("what", ["ef.profile (draws, noise, network, accumulation)",
                                  "ef.profile, default control variates", "bare network calls"])
def test_estimator_overhead(benchmark, setup, what):
    """The loop's own overhead (``control=None``), and with the control variates ``auto`` adds on 256-value rows."""
    fn = bare if what.startswith("bare") else profile if "control" in what else plain
    benchmark.pedantic(fn, args=setup, rounds=5, warmup_rounds=1)


@pytest.mark.benchmark(group=f"estimator overhead, paired: small conv net, 1x16x16, {N_SIGMAS * SAMPLES} evaluations, "
                             f"batch {BATCH}")
def test_estimator_overhead_paired(benchmark, setup):
    """``ef.profile`` (``control=None``) and the bare calls alternated round by round, their order swapped every
    round: the median of the per-round ratios (this shared machine's drift cancels within a pair)."""
    ratios = []

    def pair():
        first, second = (plain, bare) if len(ratios) % 2 == 0 else (bare, plain)
        t0 = time.perf_counter()
        first(*setup)
        t1 = time.perf_counter()
        second(*setup)
        t2 = time.perf_counter()
        ratios.append((t1 - t0) / (t2 - t1) if first is plain else (t2 - t1) / (t1 - t0))
    benchmark.pedantic(pair, rounds=15, warmup_rounds=1)
    kept = ratios[1:] or ratios  # the warm-up round out
    q = statistics.quantiles(kept, n=4) if len(kept) > 1 else kept * 3
    benchmark.extra_info["paired_ratio"] = {"median": statistics.median(kept), "q1": q[0], "q3": q[2],
                                            "rounds": len(kept)}
