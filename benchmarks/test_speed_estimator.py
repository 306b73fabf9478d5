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


def fresh(net, data, grid, xs, sig):
    """The defaults on a new tensor of the same rows each call: the controls fitted in every call (k-means,
    eigendecompositions, per-row tables), as in a process's first profile of its data."""
    profile(net, data.clone(), grid, xs, sig)


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


def _paired(benchmark, first_fn, second_fn, args, rounds=15):
    """``first_fn`` and ``second_fn`` alternated round by round, their order swapped every round: the median of the
    per-round ratios first/second (this shared machine's drift cancels within a pair), in ``extra_info``."""
    ratios = []

    def pair():
        swap = len(ratios) % 2 == 1
        a, b = (second_fn, first_fn) if swap else (first_fn, second_fn)
        t0 = time.perf_counter()
        a(*args)
        t1 = time.perf_counter()
        b(*args)
        t2 = time.perf_counter()
        ratios.append((t2 - t1) / (t1 - t0) if swap else (t1 - t0) / (t2 - t1))
    benchmark.pedantic(pair, rounds=rounds, warmup_rounds=1)
    kept = ratios[1:] or ratios  # the warm-up round out
    q = statistics.quantiles(kept, n=4) if len(kept) > 1 else kept * 3
    benchmark.extra_info["paired_ratio"] = {"median": statistics.median(kept), "q1": q[0], "q3": q[2],
                                            "rounds": len(kept)}


PAIRS = {"ef.profile control=None / bare network calls": (plain, bare),
         "ef.profile defaults (control variates) / bare network calls": (profile, bare),
         "ef.profile defaults (control variates) / ef.profile control=None": (profile, plain),
         "ef.profile defaults, fitted afresh each call (a new data tensor) / bare network calls": (fresh, bare)}


@pytest.mark.benchmark(group=f"estimator overhead, paired: small conv net, 1x16x16, {N_SIGMAS * SAMPLES} evaluations, "
                             f"batch {BATCH}")
@pytest.mark.parametrize("pair", list(PAIRS))
def test_estimator_overhead_paired(benchmark, setup, pair):
    """The loop against the bare calls, with and without the control variates the defaults take (fitted once per
    data tensor: the warm-up round's call fits them, later calls of the same tensor reuse them; and fitted afresh
    in every call), and the controls' own share."""
    _paired(benchmark, *PAIRS[pair], setup)


@pytest.fixture(scope="module")
def digits_setup():
    from entropic_fast import digits
    net, data = digits.denoiser().to(DEV), digits.load("train")[0].to(DEV)
    grid = ef.sigma_grid(N_SIGMAS)
    g = torch.Generator(device=DEV).manual_seed(0)
    x0 = data[torch.randint(len(data), (N_SIGMAS * SAMPLES,), device=DEV, generator=g)]
    sig = torch.as_tensor(grid, dtype=torch.float32, device=DEV).repeat_interleave(SAMPLES)
    return net, data, grid, x0 + sig.view(-1, 1, 1, 1) * torch.randn(x0.shape, device=DEV, generator=g), sig


@pytest.mark.benchmark(group=f"estimator overhead, paired: digits model, 1x8x8, {N_SIGMAS * SAMPLES} evaluations, "
                             f"batch {BATCH}")
@pytest.mark.parametrize("pair", list(PAIRS))
def test_estimator_overhead_paired_digits(benchmark, digits_setup, pair):
    """The same pairs on the shipped digits model (64-value rows)."""
    _paired(benchmark, *PAIRS[pair], digits_setup)
