"""Control variates (issue 14, item 3): the data's Wiener denoiser and the per-cluster (local) ones. Their
known means are checked by plain Monte Carlo; the estimator is exact where the model is the Wiener
denoiser, unbiased and calibrated where it is not (closed form), merged, saved, resumed and skipping rows
alike, and refused where a mean could not be exact."""
import numpy as np
import pytest
import torch

import entropic_fast as ef
from entropic_fast import control
from entropic_fast.errors import InputError

GAUSS = ef.analytic.Gaussian(torch.linspace(0.1, 3.0, 16))
VAR = GAUSS.var.reshape(-1)
GRID = ef.sigma_grid(16, 0.01, 50.0)
DATA = GAUSS.sample(4096, torch.Generator().manual_seed(1))
WIENER = ["wiener.data", "wiener.noise", "wiener.cross", "wiener.norm"]  # the scalar controls, by part
LOCAL = ["local.noise", "local.cross", "local.row"]  # with a data tensor's table


def misscaled(x, sigma):
    """A linear denoiser with the wrong gain ``v / (v + 2 s^2)``: its error has a closed form, and it follows
    the Wiener denoiser's imperfectly."""
    c = VAR / (VAR + 2 * sigma.double().view(-1, 1) ** 2)
    return (x.double() * c).to(x.dtype)


def misscaled_error(sigmas, second_moment):
    """``E||c x - x0||^2 = sum (c - 1)^2 E[x0^2] + c^2 s^2`` for data with per-coordinate second moments."""
    s2, v = np.asarray(sigmas)[:, None] ** 2, VAR.numpy()[None]
    c = v / (v + 2 * s2)
    return ((c - 1) ** 2 * second_moment[None] + c**2 * s2).sum(1)


@pytest.mark.parametrize("make", [control.Wiener.of_rows, control.LocalWiener.of_rows,
                                  lambda d: control.LocalWiener.of_rows(d).indexed(d)])
@pytest.mark.parametrize("sigma, dtype", [(0.002, torch.float32), (0.05, torch.float64), (1.3, torch.float32),
                                          (20.0, torch.float64)])
def test_the_controls_are_centred_on_their_exact_means(make, sigma, dtype):
    """Plain Monte Carlo of each centred control over the data's resampling distribution: mean 0 (float32 rows
    too, where the noise is a rounding-sized part of them)."""
    ctl = make(DATA)
    g = torch.Generator().manual_seed(2)
    x0 = DATA[torch.randint(len(DATA), (100000,), generator=g)].to(dtype)
    s = torch.full((len(x0),), sigma, dtype=torch.float64)
    parts = ctl.centred(x0 + sigma * torch.randn(x0.shape, generator=g, dtype=dtype), x0, s)
    assert parts.shape == (len(ctl.parts), len(x0))
    for c in parts:  # each part of mean zero
        assert abs(float(c.mean())) < 4 * float(c.std()) / len(c) ** 0.5
        assert float(c.std()) > 0


def test_the_wiener_mean_is_the_closed_form():
    w = control.Wiener.of_rows(DATA)
    lam = torch.linalg.eigvalsh(torch.cov(DATA.T, correction=0)).numpy()
    s2 = GRID[:, None] ** 2
    np.testing.assert_allclose(w.expected(GRID), (lam * s2 / (lam + s2)).sum(1), rtol=1e-10)


def test_exact_where_the_model_is_the_wiener_denoiser():
    p = ef.profile(GAUSS, GAUSS, GRID, samples=64, progress=False)  # control="auto": the Gaussian's moments
    assert p.meta["control"] == WIENER + ["local.noise", "local.cross"]  # a sampler: no row table
    # exact but for rounding: at small sigma both noise parts tend to s^2 (|z|^2 - d), a near-singular regression
    np.testing.assert_allclose(p.mse, GAUSS.mse(GRID), rtol=1e-5)
    assert np.all(p.stderr <= 1e-4 * p.mse)
    plain = ef.profile(GAUSS, GAUSS, GRID, samples=64, control=None, progress=False)
    np.testing.assert_array_equal(plain.sum, p.sum)  # the plain sums are kept as they were
    assert "control" not in plain.meta and plain.control_sum is None


@pytest.mark.parametrize("which", ["wiener", "local", "both"])
def test_unbiased_and_calibrated_where_it_is_not(which):
    """Over seeds, |z| > 2 against the closed form (for the data tensor's own moments) within binomial bounds of
    4.6%, as for the plain mean; and it saves variance."""
    truth = misscaled_error(GRID, (DATA**2).mean(0).numpy())
    z, ratio = [], []
    for seed in range(16):
        p = ef.profile(misscaled, DATA, GRID, samples=64, seed=seed, control=which, progress=False)
        z.append((p.mse - truth) / p.stderr)
        ratio.append(p.variance_ratio)
    z = np.concatenate(z)
    sd = np.sqrt(0.0455 * (1 - 0.0455) / z.size)
    assert abs(np.mean(np.abs(z) > 2) - 0.0455) < 3.5 * sd, np.mean(np.abs(z) > 2)
    assert abs(np.mean(z)) < 4 / np.sqrt(z.size)
    assert np.median(np.array(ratio)[:, :5]) > 1.5  # at small sigma all help; at large sigma only the data's own


def test_merge_save_and_resume_keep_the_controls(tmp_path):
    kw = dict(samples=96, progress=False)
    whole = ef.profile(misscaled, DATA, GRID, **kw)
    assert whole.meta["control"] == WIENER + LOCAL and whole.control_sum.shape == (42, GRID.size)
    a = ef.profile(misscaled, DATA, GRID, shard=(0, 2), **kw)
    b = ef.profile(misscaled, DATA, GRID, shard=(1, 2), **kw)
    m = a.merge(b)
    np.testing.assert_allclose(m.control_sum, whole.control_sum, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(m.mse, whole.mse, rtol=1e-8)  # 1e-16 in the sums: 2e-9 at the smallest sigma
    back = ef.Profile.load(whole.save(tmp_path / "p.npz"))
    np.testing.assert_array_equal(back.control_sum, whole.control_sum)
    np.testing.assert_array_equal(back.stderr, whole.stderr)
    assert "variance cut" in back.summary()
    with pytest.raises(InputError, match="control variates"):
        a.merge(ef.profile(misscaled, DATA, GRID, shard=(1, 2), control="wiener", **kw))
    ck = tmp_path / "ck.npz"
    with pytest.raises(KeyboardInterrupt):
        ef.profile(Stopping(5), DATA, GRID, checkpoint=ck, checkpoint_every=1, batch_size=64, **kw)
    resumed = ef.profile(Stopping(), DATA, GRID, checkpoint=ck, batch_size=64, **kw)
    np.testing.assert_allclose(resumed.control_sum, whole.control_sum, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(resumed.mse, whole.mse, rtol=1e-8)
    with pytest.raises(ef.estimate.CheckpointMismatch, match="control"):
        ef.profile(Stopping(), DATA, GRID, checkpoint=ck, batch_size=64, control="wiener", **kw)


class Stopping:
    """``misscaled``, raising KeyboardInterrupt after ``after`` calls."""

    def __init__(self, after=None):
        self.after, self.calls = after, 0

    def __call__(self, x, sigma):
        if self.after is not None and self.calls >= self.after:
            raise KeyboardInterrupt
        self.calls += 1
        return misscaled(x, sigma)

    def fingerprint(self):
        return "misscaled"


def test_skipped_rows_leave_the_control_sums_too():
    def sometimes_nan(x, sigma):
        out = misscaled(x, sigma)
        out[::7] = float("nan")
        return out

    p = ef.profile(sometimes_nan, DATA, GRID, samples=64, nonfinite="skip", progress=False)
    assert p.meta["dropped"] > 0 and np.all(np.isfinite(p.control_sum)) and np.all(np.isfinite(p.mse))
    truth = misscaled_error(GRID, (DATA**2).mean(0).numpy())
    assert np.max(np.abs(p.mse - truth) / p.stderr) < 5


def test_which_controls_where():
    class Sampler:
        def sample(self, n, generator=None):
            return torch.randn(n, 4, generator=generator)

    with pytest.raises(InputError, match="needs a data tensor, or data with exact moments"):
        ef.profile(lambda x, s: x, Sampler(), GRID, samples=8, control="wiener", progress=False)
    assert "control" not in ef.profile(lambda x, s: x, Sampler(), GRID, samples=8, progress=False).meta
    local = ef.profile(lambda x, s: x / (1 + s.view(-1, 1) ** 2), Sampler(), GRID, samples=8, control="local",
                       progress=False)
    assert local.meta["control"] == ["local.noise", "local.cross"]  # clusters from the sampler's rows: still exact
    shrink = lambda x, s: x / (1 + s.view(-1, 1) ** 2)  # noqa: E731
    mid = torch.randn(40, control.AUTO_DIM + 1)  # auto stops at AUTO_DIM (the controls' cost), asked for they run
    assert "control" not in ef.profile(shrink, mid, GRID[:3], samples=4, progress=False).meta
    assert ef.profile(shrink, mid, GRID[:3], samples=4, control="both", progress=False).meta["control"] == \
        WIENER + LOCAL
    wide = torch.randn(8, control.MAX_DIM + 1)
    assert "control" not in ef.profile(shrink, wide, GRID[:3], samples=4, progress=False).meta
    with pytest.raises(InputError, match="at most 4096 values"):
        ef.profile(lambda x, s: x, wide, GRID[:3], samples=4, control="wiener", progress=False)
    with pytest.raises(InputError, match="control must be one of"):
        ef.profile(lambda x, s: x, DATA, GRID, samples=4, control="pca", progress=False)
    # the fused mixture path has no per-row errors: auto leaves it fused, an explicit control takes the plain path
    gmm = ef.analytic.GMM(torch.randn(3, 2, dtype=torch.float64), 0.2)
    assert "control" not in ef.profile(gmm, gmm, GRID, samples=32, progress=False).meta
    assert ef.profile(gmm, gmm, GRID, samples=32, control="both", progress=False).meta["control"] == \
        WIENER + ["local.noise", "local.cross"]


def test_a_non_linear_model_is_unbiased_with_both_controls():
    """The GMM's exact (non-linear) denoiser: the controlled estimate agrees with a 16x larger plain one."""
    g = torch.Generator().manual_seed(3)
    gmm = ef.analytic.GMM(torch.randn(6, 8, generator=g, dtype=torch.float64) * 1.5, 0.3)
    big = ef.profile(gmm, gmm, GRID, samples=8192, seed=9, progress=False)  # fused, plain
    z = []
    for seed in range(6):
        p = ef.profile(gmm, gmm, GRID, samples=512, seed=seed, control="both", progress=False)
        z.append((p.mse - big.mse) / np.hypot(p.stderr, big.stderr))
    z = np.concatenate(z)
    assert np.mean(np.abs(z) > 2) < 0.12 and abs(np.mean(z)) < 4 / np.sqrt(z.size), (np.mean(np.abs(z) > 2), z.mean())


def test_the_stderr_counts_the_coefficients_estimated_from_few_samples():
    """Errors linear in seven controls of known mean zero plus noise, 16 samples per estimate (an adaptive run's
    pilot), 4000 estimates with the true mean known: the estimate's spread is about ``sqrt((n - 2) / (n - k - 2)) =
    1.41`` times ``s / sqrt(n)`` (Lavenberg and Welch 1981); the stderr follows it (the pivot is Student's t with
    8 degrees of freedom: 8.6% outside +-1.96), where ``s / sqrt(n)`` alone had 20% outside."""
    g = torch.Generator().manual_seed(0)
    reps, n, k = 4000, 16, 7
    c = torch.randn(reps, k, n, generator=g, dtype=torch.float64)
    e = 3.0 + (torch.linspace(0.5, 2.0, k, dtype=torch.float64)[None, :, None] * c).sum(1) \
        + torch.randn(reps, n, generator=g, dtype=torch.float64)
    sums = torch.stack([control.row_sums(e[r], c[r]).sum(1) for r in range(reps)], 1).numpy()
    mean, se = control.estimate(e.sum(1).numpy(), (e * e).sum(1).numpy(), np.full(reps, n), sums)
    z = (mean - 3.0) / se
    outside = float(np.mean(np.abs(z) > 1.96))
    assert 0.06 < outside < 0.115, outside
    assert np.std(mean - 3.0) == pytest.approx(np.sqrt(14 / 7 / n), rel=0.08)  # 1.41 / sqrt(n): sigma 1
