"""Each kernel launcher: the CPU path (torch twins with C++ Philox), the plain torch twin, a naive unfused
torch version, and the Triton kernel on CUDA. One benchmark group per kernel, so the contenders sit side by side."""
import pytest
import torch

from conftest import CUDA, DEV, sync
from entropic_fast.kernels import cpu, reference

ROWS, SHAPE, K = 256, (3, 32, 32), 256
DIM = SHAPE[0] * SHAPE[1] * SHAPE[2]


def naive_accumulate(d, x0, idx, acc, spectral=None):
    """One masked reduction per sigma, as a loop over noise levels would do."""
    err = (d.float() - x0.float()).square().flatten(1).sum(1).double()
    for i in range(acc.shape[1]):
        m = idx == i
        acc[0, i] += err[m].sum()
        acc[1, i] += err[m].square().sum()
        acc[2, i] += m.sum()
    if spectral is not None:
        p = torch.fft.fft2((d.float() - x0.float()), norm="ortho").abs().square().double()
        for i in range(spectral.shape[0]):
            spectral[i] += p[idx == i].sum(0)


def naive_perturb(x0, sigma, seed, row_ids):
    g = torch.Generator(x0.device).manual_seed(seed)
    return x0 + sigma.view(-1, *([1] * (x0.ndim - 1))) * torch.randn(x0.shape, generator=g, device=x0.device)


def naive_ideal(means, var, logw, x0, sigma, seed, row_ids, sigma_index, acc):
    x = naive_perturb(x0, sigma, seed, row_ids)
    d2 = torch.cdist(x.reshape(len(x), -1).float(), means.float()) ** 2
    p = torch.softmax(logw.float() - d2 / (2 * (var.float() + sigma.float()[:, None] ** 2)), 1)
    naive_accumulate((p @ means.float()).reshape(x0.shape), x0, sigma_index, acc)


IMPLS = {"CPU path (C++ Philox)": cpu, "torch twin": reference,
         "naive unfused torch": {"accumulate_error": naive_accumulate, "perturb": naive_perturb,
                                 "ideal_error": naive_ideal}}
if CUDA:
    from entropic_fast.kernels import launchers
    IMPLS = {"Triton": launchers("triton", DEV), "torch twin": reference, "naive unfused torch": IMPLS["naive unfused torch"]}


def launcher(impl, name):
    got = IMPLS[impl]
    return got[name] if isinstance(got, dict) else getattr(got, name)


@pytest.fixture(scope="module")
def inputs():
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(ROWS, *SHAPE, generator=g).to(DEV)
    d = x0 + 0.1 * torch.randn(ROWS, *SHAPE, generator=g).to(DEV)
    means = torch.randn(K, 64, generator=g).to(DEV)
    return dict(x0=x0, d=d, idx=torch.arange(ROWS, device=DEV) % 32, rid=torch.arange(ROWS, device=DEV),
                sigma=torch.rand(ROWS, generator=g).to(DEV) * 10, means=means,
                pts=means[torch.randint(K, (ROWS,), generator=g).to(DEV)])


def timed(benchmark, fn):
    def run():
        fn()
        sync()
    benchmark(run)


@pytest.mark.benchmark(group=f"perturb: {ROWS} rows of {'x'.join(map(str, SHAPE))}")
@pytest.mark.parametrize("impl", list(IMPLS))
def test_perturb(benchmark, inputs, impl):
    f = launcher(impl, "perturb")
    timed(benchmark, lambda: f(inputs["x0"], inputs["sigma"], 7, inputs["rid"]))


@pytest.mark.benchmark(group=f"accumulate_error: {ROWS} rows of {'x'.join(map(str, SHAPE))} into 32 sigmas")
@pytest.mark.parametrize("impl", list(IMPLS))
def test_accumulate_error(benchmark, inputs, impl):
    f, acc = launcher(impl, "accumulate_error"), torch.zeros(4, 32, dtype=torch.float64, device=DEV)
    timed(benchmark, lambda: f(inputs["d"], inputs["x0"], inputs["idx"], acc))


@pytest.mark.benchmark(group=f"accumulate_error + spectrum: {ROWS} rows of {'x'.join(map(str, SHAPE))}")
@pytest.mark.parametrize("impl", list(IMPLS))
def test_accumulate_spectrum(benchmark, inputs, impl):
    f = launcher(impl, "accumulate_error")
    acc, spec = torch.zeros(4, 32, dtype=torch.float64, device=DEV), torch.zeros(32, *SHAPE, dtype=torch.float64,
                                                                              device=DEV)
    timed(benchmark, lambda: f(inputs["d"], inputs["x0"], inputs["idx"], acc, spec))


@pytest.mark.benchmark(group=f"ideal_error: {ROWS} rows, point set of {K} points in 64-D")
@pytest.mark.parametrize("impl", list(IMPLS))
def test_ideal_error(benchmark, inputs, impl):
    f, acc = launcher(impl, "ideal_error"), torch.zeros(4, 32, dtype=torch.float64, device=DEV)
    means = inputs["means"]
    var, logw = torch.zeros(K, device=DEV), torch.full((K,), -float(torch.log(torch.tensor(K))), device=DEV)
    timed(benchmark, lambda: f(means, var, logw, inputs["pts"], inputs["sigma"], 7, inputs["rid"], inputs["idx"], acc))
