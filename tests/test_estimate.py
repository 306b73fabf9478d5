import numpy as np
import pytest
import torch
from scipy import integrate, stats

import entropic_fast as ef
from entropic_fast.errors import InputError
from entropic_fast.kernels import cpu, reference

GRID = ef.sigma_grid(24, 0.002, 80.0)


def gmm():
    g = torch.Generator().manual_seed(0)
    return ef.analytic.GMM(torch.randn(5, 3, 2, generator=g, dtype=torch.float64), 0.1)


def test_gaussian_mse_within_four_standard_errors():
    gauss = ef.analytic.Gaussian(0.25, (4,))
    p = ef.profile(gauss, gauss, samples=512, seed=3, control=None, progress=False)  # the plain mean
    z = (p.mse - gauss.mse(p.sigmas)) / p.stderr
    assert p.sigmas.size == 128 and np.all(p.count == 512)
    assert np.max(np.abs(z)) < 4, f"worst z-score {np.max(np.abs(z)):.2f}"


def test_same_seed_same_profile_whatever_the_batch_size():
    model = gmm()
    data = model.sample(300)
    ps = [ef.profile(model, data, GRID, samples=100, batch_size=b, seed=5, progress=False) for b in (7, 64, 1000)]
    for p in ps[1:]:
        np.testing.assert_allclose(p.sum, ps[0].sum, rtol=1e-12)
        np.testing.assert_allclose(p.sumsq, ps[0].sumsq, rtol=1e-12)
        np.testing.assert_array_equal(p.count, ps[0].count)
    other = ef.profile(model, data, GRID, samples=100, seed=6, progress=False)
    assert not np.allclose(other.sum, ps[0].sum), "a different seed must draw different work"


def test_data_rows_are_philox_words_and_uniform():
    """A data tensor's row draws: Python integer arithmetic on the twin's Philox words gives the same indices
    (row ids past 2^32 and data sizes past 2^32 too), a row's index depends on its id alone, and the counts over
    a small data set pass a chi-square test."""
    from entropic_fast.units import data_rows, noise_key
    rid = torch.tensor([0, 1, 31, 2**32 + 7, 2**40 + 3, 2**62 + 11])
    w0, w1, _, _ = reference.philox(noise_key(9), torch.full_like(rid, 2**32 - 2), rid & reference.MASK32, rid >> 32,
                                    torch.zeros_like(rid))
    key = noise_key(9)
    for n in (1, 7, 2000, 3 * 2**40 + 1):
        want = [((int(a) | int(b) << 32) * n) >> 64 for a, b in zip(w0, w1)]
        assert data_rows(key, rid.numpy(), n).tolist() == want
    many = np.arange(70_000)
    picks = data_rows(key, many, 7)
    assert np.array_equal(data_rows(key, many[::-1], 7), picks[::-1])
    assert stats.chisquare(np.bincount(picks, minlength=7)).pvalue > 1e-4
    assert not np.array_equal(data_rows(noise_key(10), many[:64], 2000), data_rows(key, many[:64], 2000))


def test_shards_merge_into_the_whole():
    model = gmm()
    whole = ef.profile(model, model, GRID, samples=70, seed=2, progress=False)
    parts = [ef.profile(model, model, GRID, samples=70, seed=2, shard=(k, 3), progress=False) for k in range(3)]
    merged = parts[0].merge(parts[1]).merge(parts[2])
    np.testing.assert_allclose(merged.sum, whole.sum, rtol=1e-12)
    np.testing.assert_allclose(merged.sumsq, whole.sumsq, rtol=1e-12)
    np.testing.assert_array_equal(merged.count, whole.count)
    assert all(p.count.sum() < whole.count.sum() for p in parts)


def test_point_set_entropy_is_log_n():
    # 16 atoms at least 2 apart in 2-D: H(s_max) - H(s_min) -> log 16 (DESIGN section 1)
    pts = torch.stack(torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="ij"), -1).reshape(16, 2) * 2
    ps = ef.analytic.PointSet(pts.double())
    p = ef.profile(ps, ps, samples=1024, seed=0, progress=False)
    h = ef.entropic_time(p, "entropic")[-1]
    # over seeds 0-11 the error is +0.008 +- 0.016 nats (mean +- sd; 0.6% of log 16): 3 sd allowed
    # (the bias of the finite range, I(x0; x_80) ~ d var / (2 80^2), is 8e-4 nats)
    assert abs(h / np.log(16) - 1) < 0.018, f"H = {h:.4f}, log N = {np.log(16):.4f}"


def _two_point_mse(s):
    """Exact MMSE of two equiprobable points +-1 in 1-D (posterior mean tanh(x / s^2)), by quadrature."""
    f = lambda n: stats.norm.pdf(n) * (np.tanh((1 + s * n) / s**2) - 1) ** 2  # noqa: E731
    return integrate.quad(f, -12, 12, points=[-1 / s], limit=400, epsabs=0, epsrel=1e-10)[0]


def test_rare_events_at_small_sigma_are_seen_with_honest_error_bars():
    """The model-free path's importance sampling: where the error is a rare event (P(noise crosses to the other
    point) = 2e-5 to 4e-4), plain draws see nothing, with a stderr of 0; these agree with quadrature within
    their stderr, and the stderr is a usable fraction of the value."""
    ps = ef.analytic.PointSet(torch.tensor([[-1.0], [1.0]], dtype=torch.float64))
    grid = np.array([0.2, 0.25, 0.3, 1.0])
    exact = np.array([_two_point_mse(s) for s in grid])
    p = ef.profile(ps, ps, grid, samples=2048, seed=0, progress=False)
    z = (p.mse - exact) / p.stderr
    assert p.meta["importance"] == {"wide": [list(t) for t in reference.IS_WIDE]}
    assert np.all(np.abs(z) < 4), f"z = {z}"
    assert np.all(p.stderr < 0.6 * exact), f"relative stderr {p.stderr / exact}"


def test_importance_weights_are_the_density_ratio():
    """``E_q[w f] = E_p[f]`` for noise drawn by ``importance_perturb``: f = 1 and f = ||n||^2 / s^2 (mean d)."""
    rows, dim, s = 200_000, 3, 0.7
    x0 = torch.zeros(rows, dim)
    sigma = torch.full((rows,), s)
    x, w = reference.importance_perturb(cpu.perturb, x0, sigma, 5, torch.arange(rows))
    rho2 = x.double().square().sum(1) / s**2
    assert float((rho2 > 4 * dim).double().mean()) > 0.1  # the wide draws are there (plain draws alone: 0.007)
    for f, want in ((torch.ones_like(rho2), 1.0), (rho2, float(dim))):
        v = w * f
        assert abs(float(v.mean()) - want) < 4 * float(v.std()) / rows**0.5, (float(v.mean()), want)
    assert float(w.max()) <= 1 / (1 - sum(share for _, share in reference.IS_WIDE)) + 1e-12


def test_high_dimensional_rows_are_drawn_plainly():
    """Above ``IS_MAX_DIM`` the noise is the plain draw and there is no weight."""
    x0, sigma, rid = torch.randn(5, reference.IS_MAX_DIM + 1), torch.rand(5) + 0.1, torch.arange(5)
    x, w = reference.importance_perturb(cpu.perturb, x0, sigma, 3, rid)
    assert w is None and torch.equal(x, cpu.perturb(x0, sigma, 3, rid))


def test_labels_travel_with_their_rows():
    data = torch.arange(40.0).reshape(40, 1).repeat(1, 3)
    labels = torch.arange(40)

    def oracle(x, sigma, y):  # knows x0 from its label: zero error only if labels follow their rows
        return y[:, None].to(x.dtype).repeat(1, 3)

    p = ef.profile(oracle, data, GRID, samples=50, batch_size=13, labels=labels, progress=False)
    assert np.all(p.sum == 0) and np.all(p.count == 50)


def test_network_dtype_is_respected_and_errors_are_float64():
    seen = []

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.tensor(0.5, dtype=torch.bfloat16))

        def forward(self, x, sigma):
            seen.append(x.dtype)
            return x * self.scale

    data = torch.randn(64, 2, 3)
    p = ef.profile(Net(), data, GRID, samples=40, progress=False)
    assert set(seen) == {torch.bfloat16}
    assert p.sum.dtype == np.float64 and np.all(np.isfinite(p.mse))
    assert p.meta["dtype"] == "bfloat16"


def test_progress_bar_is_shown(capsys):
    gauss = ef.analytic.Gaussian(1.0, (2,))
    ef.profile(gauss, gauss, GRID, samples=8, progress=True)
    assert "profile" in capsys.readouterr().err


def test_non_finite_output_names_the_sigma():
    def bad(x, sigma):
        return torch.where(sigma.view(-1, 1) > 1.0, torch.nan, x)

    with pytest.raises(InputError, match=r"not finite at sigma=1\.\d+ \(40 of 40 samples"):
        ef.profile(bad, torch.randn(10, 4), GRID, samples=40, progress=False)


@pytest.mark.parametrize("kwargs, match", [
    (dict(denoiser=lambda x, s: x[:, :1]), "denoiser output has shape"),
    (dict(data=torch.randn(5)), r"data must be a tensor \(N, \*shape\)"),
    (dict(data=[1, 2]), "must be a tensor"),
    (dict(labels=torch.zeros(3)), "labels must be a tensor with one row per data row"),
    (dict(samples=0), "samples must be an integer >= 1, got 0"),
    (dict(sigmas=[1.0, 0.1]), "strictly ascending"),
    (dict(shard=(2, 2)), "shard must be"),
    (dict(compile=1), "compile must be True or False, got 1"),
    (dict(channels_last="yes"), "channels_last must be True or False, got 'yes'"),
])
def test_bad_input(kwargs, match):
    args = dict(denoiser=lambda x, s: x, data=torch.randn(10, 4), sigmas=GRID, samples=4, progress=False)
    args.update(kwargs)
    with pytest.raises(InputError, match=match):
        ef.profile(args.pop("denoiser"), args.pop("data"), **args)


def test_padded_calls_see_one_batch_shape():
    from entropic_fast.protocol import _padded
    shapes = []

    def net(x, sigma, lab):
        shapes.append((tuple(x.shape), tuple(sigma.shape), None if lab is None else tuple(lab.shape)))
        return x * sigma[:, None] + (0 if lab is None else lab[:, None])

    call = _padded(net)
    for rows in (5, 3, 5, 1):
        x, s, lab = torch.randn(rows, 2), torch.rand(rows), torch.arange(rows, dtype=torch.float32)
        torch.testing.assert_close(call(x, s, lab), x * s[:, None] + lab[:, None])
    assert {sh for sh in shapes} == {((5, 2), (5,), (5,))}


class ConvNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 2, 3, padding=1)

    def forward(self, x, sigma):
        return x / (1 + sigma.view(-1, 1, 1, 1) ** 2) + 0.1 * self.conv(x)


@pytest.mark.parametrize("option", [dict(compile=True), dict(channels_last=True)])
def test_compile_and_channels_last_give_the_same_profile(option):
    torch.manual_seed(0)
    net, data = ConvNet().eval(), torch.randn(40, 2, 5, 6)
    kw = dict(samples=40, batch_size=48, seed=1, progress=False)  # 40 rows per sigma: units of 32 and 8, short batches
    plain = ef.profile(net, data, GRID[::6], **kw)
    other = ef.profile(net, data, GRID[::6], **kw, **option)
    np.testing.assert_allclose(other.sum, plain.sum, rtol=1e-5)
    np.testing.assert_array_equal(other.count, plain.count)
    if option.get("channels_last"):
        assert net.conv.weight.is_contiguous(memory_format=torch.channels_last)


class KWrapper(torch.nn.Module):
    """A k-diffusion / ComfyUI-style wrapper: conditioning by keyword only."""

    def forward(self, x, sigma, *, cond=None):
        return x / (1 + sigma.view(-1, 1) ** 2) + (0 if cond is None else cond.view(-1, 1).to(x.dtype))


def test_labels_reach_a_keyword():
    data, labels = torch.randn(50, 3), torch.arange(50) % 4
    grid = GRID[::6]
    p = ef.profile(KWrapper(), data, grid, samples=40, labels=labels, labels_kwarg="cond", progress=False)
    q = ef.profile(lambda x, s, y: KWrapper()(x, s, cond=y), data, grid, samples=40, labels=labels, progress=False)
    np.testing.assert_array_equal(p.sum, q.sum)
    assert not np.allclose(p.sum, ef.profile(KWrapper(), data, grid, samples=40, progress=False).sum)
    with pytest.raises(InputError, match="no keyword 'context'"):
        ef.profile(KWrapper(), data, grid, samples=4, labels=labels, labels_kwarg="context", progress=False)
    with pytest.raises(InputError, match="takes no third argument"):
        ef.profile(KWrapper(), data, grid, samples=4, labels=labels, progress=False)
    with pytest.raises(InputError, match="labels_kwarg must be a keyword name"):
        ef.profile(KWrapper(), data, grid, samples=4, labels=labels, labels_kwarg="not a name", progress=False)
