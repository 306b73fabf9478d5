import numpy as np
import pytest
import torch
from scipy.linalg import sqrtm
from scipy.stats import norm

import entropic_fast as ef
from entropic_fast import grids, metrics, samplers
from entropic_fast.errors import InputError

LAM = 0.25


def start(n, s0, lam=LAM, seed=0):
    return torch.randn(n, 1, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * np.sqrt(lam + s0**2)


def test_deterministic_ddim_variance_is_the_closed_form():
    g = ef.analytic.Gaussian(LAM, (1,))
    s = grids.karras(10, 0.002, 80.0)
    x = samplers.ddim(g, start(200_000, s[0]), s)
    closed = (LAM + s[0] ** 2) * np.prod(((LAM + s[:-1] * s[1:]) / (LAM + s[:-1] ** 2)) ** 2)
    assert abs(x.var().item() / closed - 1) < 4 * np.sqrt(2 / 200_000)
    # and the KL of the closed form is what metrics says for the same list
    r = closed / LAM
    assert abs(metrics.gaussian_ddim_kl(s, [LAM]) - 0.5 * (1 / r - 1 + np.log(r))) < 1e-12


def test_stochastic_ddim_with_many_steps_recovers_the_data_variance():
    g = ef.analytic.Gaussian(LAM, (1,))
    err = []
    for K in (64, 256, 1024):  # first order: the variance error shrinks about 4x per 4x steps
        s = grids.karras(K, 0.002, 80.0)
        x = samplers.ddim(g, start(50_000, s[0]), s, generator=torch.Generator().manual_seed(1), eta=1.0)
        err.append(abs(x.var().item() / LAM - 1))
    assert err[0] > err[1] > err[2] and err[2] < 0.03 and abs(x.mean().item()) < 0.01


@pytest.mark.parametrize("name, order", [("ddim", 1), ("heun", 2), ("dpmpp_2m", 2)])
def test_samplers_converge_with_their_order(name, order):
    # the exact denoiser makes these samplers linear maps: one row gives the output variance exactly
    g = ef.analytic.Gaussian(LAM, (1,))
    err = []
    for K in (16, 32, 64, 128):
        s = grids.karras(K, 0.002, 80.0)
        x = torch.full((1, 1), np.sqrt(LAM + s[0] ** 2), dtype=torch.float64)
        err.append(abs(samplers.SAMPLERS[name](g, x, s).item() ** 2 / LAM - 1))
    slopes = np.diff(np.log2(err))
    assert np.all(err[-1] < np.array(err[:-1]))
    assert abs(slopes[-1] + order) < 0.15, slopes


def test_samplers_keep_dtype_labels_and_batch_independence():
    seen = []

    def den(x, sigma, labels):
        seen.append((x.dtype, labels.tolist()))
        return x * 0.5

    x = torch.randn(3, 2, dtype=torch.float32)
    out = samplers.heun(den, x, grids.karras(4, 0.1, 10.0), labels=torch.tensor([1, 2, 3]))
    assert out.dtype == torch.float32 and all(d == torch.float32 and l == [1, 2, 3] for d, l in seen)
    g = ef.analytic.GMM(torch.tensor([[-1.0], [1.0]]), 0.1)
    xs = start(8, 10.0)
    whole = samplers.dpmpp_2m(g, xs, grids.karras(6, 0.01, 10.0))
    part = samplers.dpmpp_2m(g, xs[:3], grids.karras(6, 0.01, 10.0))
    torch.testing.assert_close(whole[:3], part, rtol=1e-13, atol=1e-13)


def test_sampler_input_checks():
    with pytest.raises(InputError, match="ending in 0"):
        samplers.ddim(lambda x, s: x, torch.zeros(2, 1), [10.0, 1.0])
    with pytest.raises(InputError, match="eta must be in"):
        samplers.ddim(lambda x, s: x, torch.zeros(2, 1), [10.0, 0.0], eta=2.0)


# ---------------------------------------------------------------- metrics


def test_kl_discrete_1d():
    atoms, w = np.array([-1.0, 0.0, 2.0]), np.array([0.2, 0.3, 0.5])
    rng = np.random.default_rng(0)
    exact = rng.choice(atoms, 100_000, p=w) + rng.normal(0, 0.05, 100_000)
    assert metrics.kl_discrete_1d(exact, atoms, w) < 1e-4
    skewed = rng.choice(atoms, 100_000, p=[0.4, 0.3, 0.3])
    expected = np.sum(w * np.log(w / np.array([0.4, 0.3, 0.3])))
    assert abs(metrics.kl_discrete_1d(skewed, atoms, w) - expected) < 5e-3


def test_kl_continuous_1d_against_gaussian_closed_form():
    rng = np.random.default_rng(1)
    data = rng.normal(0, 1, 20_000)
    model = rng.normal(0.3, 1.2, 20_000)
    closed = np.log(1.2) + (1 + 0.3**2) / (2 * 1.2**2) - 0.5
    got = metrics.kl_continuous_1d(model, data, lambda x: norm.logpdf(x))
    assert abs(got - closed) < 0.01
    assert abs(metrics.kl_continuous_1d(rng.normal(0, 1, 20_000), data, lambda x: norm.logpdf(x))) < 0.01


def test_sliced_wasserstein():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20_000, 3, generator=g, dtype=torch.float64)
    shift = torch.tensor([1.0, -2.0, 2.0], dtype=torch.float64)
    # W2 of a shift along a unit direction u is |shift . u|: its mean square over the sphere is |shift|^2 / d
    got = metrics.sliced_wasserstein(x, x + shift, projections=2000)
    assert abs(got - np.sqrt(9.0 / 3)) < 0.05
    assert metrics.sliced_wasserstein(x, torch.randn(20_000, 3, generator=g, dtype=torch.float64)) < 0.03


def test_frechet_distance_matches_scipy_sqrtm():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(500, 6)) @ rng.normal(size=(6, 6))
    b = rng.normal(size=(400, 6)) @ rng.normal(size=(6, 6)) + 0.5
    ca, cb = np.cov(a.T), np.cov(b.T)
    ref = np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(ca + cb - 2 * sqrtm(ca @ cb).real)
    assert abs(metrics.frechet_distance(a, b) - ref) < 1e-8 * ref
    assert metrics.frechet_distance(a, a) < 1e-8


@pytest.mark.parametrize("name", sorted(samplers.SAMPLERS))
def test_evaluations_count_the_denoiser_calls(name):
    """``samplers.evaluations`` is what the sampler really spends; ``steps_within`` the most steps a budget buys."""
    calls = []

    def den(x, sigma):
        calls.append(1)
        return x / (1 + sigma.view(-1, *[1] * (x.ndim - 1)) ** 2)

    for k in (1, 2, 5):
        calls.clear()
        sig = torch.tensor(list(np.geomspace(10.0, 0.01, k)) + [0.0]) if k > 1 else torch.tensor([10.0, 0.0])
        samplers.SAMPLERS[name](den, torch.randn(3, 2, dtype=torch.float64) * 10, sig,
                                generator=torch.Generator().manual_seed(0))
        assert len(calls) == samplers.evaluations(name, k)
    for budget in (1, 4, 7, 16):
        k = samplers.steps_within(name, budget)
        assert samplers.evaluations(name, k) <= max(budget, 1) < samplers.evaluations(name, k + 1)


def test_the_gaussian_theory_covers_the_table_from_the_table():
    """Each sampler's Gaussian recursion is its table entry's (``gaussian_step``), so the theory knows exactly the
    samplers the table holds, by every name; and it is the sampler's own arithmetic: run on the exact denoiser of
    one direction, the sampler maps x to ``amp * x`` (deterministic samplers)."""
    from entropic_fast import gaussian
    assert gaussian.GAUSSIAN_SAMPLERS == tuple(t.name for t in samplers.TABLE if t.gaussian_step is not None)
    lam, sig = 0.3, np.array([20.0, 3.0, 0.7, 0.1, 0.0])
    for entry in samplers.TABLE:
        for name in (entry.name, *entry.aliases):
            amp, extra = gaussian.sampler_gain(sig, np.array([lam]), name)
            if entry.stochastic:
                assert extra[0] > 0
                continue
            x = torch.linspace(-2, 2, 5, dtype=torch.float64)[:, None]
            out = entry.run(lambda v, s: lam / (lam + s[:, None] ** 2) * v, x, sig)
            np.testing.assert_allclose(out[:, 0].numpy(), amp[0] * x[:, 0].numpy(), rtol=1e-12)
