import json
import warnings

import numpy as np
import pytest
import torch

import entropic_fast as ef
from entropic_fast import kinds
from entropic_fast.errors import InputError

C, D = 0.5, 3


def gaussian_profile(n=128):
    """Exact profile of N(0, C^2 I_D); spectral too, as D directions of 1x1 images."""
    s = ef.sigma_grid(n)
    e = s**2 * C**2 / (s**2 + C**2)
    return ef.Profile.from_curve(s, D * e, D, spectra=np.repeat(e[:, None], D, 1).reshape(n, D, 1, 1),
                                 data_power=np.full((D, 1, 1), C**2))


def tangent_law(K, smin=0.002, smax=80.0, c=C):
    i = np.arange(K)
    return c * np.tan(np.arctan(smax / c) + i / (K - 1) * (np.arctan(smin / c) - np.arctan(smax / c)))


@pytest.mark.parametrize("K", [8, 16, 32])
def test_rescaled_schedule_is_the_tangent_law(K):
    s = ef.schedule(gaussian_profile(), K, "rescaled", interval="range")
    assert s.shape == (K + 1,) and s[-1] == 0 and s[0] == 80.0 and s[-2] == 0.002
    np.testing.assert_allclose(s[:-1], tangent_law(K), rtol=1e-4)


@pytest.mark.parametrize("K", [8, 16])
def test_spectral_schedule_of_isotropic_data_is_the_tangent_law(K):
    np.testing.assert_allclose(ef.schedule(gaussian_profile(), K, "spectral", interval="range")[:-1], tangent_law(K), rtol=1e-4)


def test_left_riemann_recipe_is_worse():
    # the paper's recipe (left Riemann sum in sigma on the same grid) misses the total by ~3.9%
    p = gaussian_profile()
    s, e = p.sigmas, p.mse
    riemann = np.sum(e[:-1] / s[:-1] ** 2 * np.diff(s))
    exact = D * C * (np.arctan(80 / C) - np.arctan(0.002 / C))
    assert abs(riemann / exact - 1) > 0.03
    assert abs(ef.entropic_time(p, "rescaled")[-1] / exact - 1) < 1e-5


def test_entropic_time_matches_closed_form():
    p = gaussian_profile()
    s = p.sigmas
    h = ef.entropic_time(p, "entropic")
    closed = 0.5 * D * np.log(s**2 / (s**2 + C**2))
    np.testing.assert_allclose(h, closed - closed[0], rtol=1e-5, atol=1e-6 * h[-1])


@pytest.mark.parametrize("n, rtol", [(128, 1e-5), (64, 1e-4)])
def test_las_coincides_with_entropic_for_gaussian_data(n, rtol):
    """DESIGN asks 1e-4 on exact curves; measured 1.8e-6 on 128 points and 2.9e-5 on 64."""
    s = ef.sigma_grid(n)
    p = ef.Profile.from_curve(s, 4 * s**2 * 0.25 / (s**2 + 0.25), 4)
    for K in (8, 16, 32):
        np.testing.assert_allclose(ef.schedule(p, K, "las", interval="range"), ef.schedule(p, K, "entropic", interval="range"),
                                   rtol=rtol)


def test_sub_range_uses_the_same_time():
    p = gaussian_profile()
    s = ef.schedule(p, 6, "rescaled", sigma_min=0.01, sigma_max=10.0, interval="range")
    np.testing.assert_allclose(s[:-1], tangent_law(6, 0.01, 10.0), rtol=1e-4)


def test_sampled_profile_schedule_is_close_and_smoothing_is_on():
    gauss = ef.analytic.Gaussian(C**2, (D,))
    p = ef.profile(gauss, gauss, samples=256, control=None, progress=False)  # the plain mean is noisy
    s = ef.schedule(p, 16, "rescaled", interval="range")
    np.testing.assert_allclose(s[:-1], tangent_law(16), rtol=0.05)
    from entropic_fast.schedules import error_curve
    assert np.all(np.diff(error_curve(p)) >= 0) and not np.all(np.diff(p.mse) >= 0)


@pytest.mark.parametrize("kind", ef.KINDS)
def test_every_kind_is_strictly_descending_within_its_bounds(kind):
    """On the bounds (interval="range") every kind but the peers that ComfyUI ends elsewhere spans them exactly;
    by default ours choose an interval inside them."""
    s = ef.schedule(gaussian_profile(), 10, kind, sigma_min=0.01, sigma_max=20.0, interval="range")
    assert s.shape == (11,) and s[-1] == 0 and np.all(np.diff(s) < 0)
    if not kinds.get(kind).peer:
        assert s[0] == 20.0 and s[-2] == 0.01
    auto = ef.schedule(gaussian_profile(), 10, kind, sigma_min=0.01, sigma_max=20.0)
    assert 0.01 <= auto[-2] and auto[0] <= 20.0 and np.all(np.diff(auto) < 0)


def test_tangent_kind_finds_the_data_scale():
    np.testing.assert_allclose(ef.schedule(gaussian_profile(), 11, "tangent")[:-1], tangent_law(11), rtol=1e-9)


def test_flat_and_tiny_error_curves():
    s = ef.sigma_grid(64)
    tiny = ef.schedule(ef.Profile.from_curve(s, 1e-280 * s**2 / (1 + s**2), 1), 12, "entropic", interval="range")
    ref = ef.schedule(ef.Profile.from_curve(s, s**2 / (1 + s**2), 1), 12, "entropic", interval="range")
    np.testing.assert_allclose(tiny, ref, rtol=1e-12)
    with pytest.warns(UserWarning, match="exceeds the trivial bound"):  # 2.0 > d s^2 at small sigma
        flat = ef.schedule(ef.Profile.from_curve(s, np.full(64, 2.0), 1), 12, "rescaled", interval="range")
    assert np.all(np.diff(flat[:-1]) < 0)
    with pytest.raises(InputError, match="error is zero at every sigma"):
        ef.schedule(ef.Profile.from_curve(s, np.zeros(64), 1), 12, "rescaled")
    with pytest.raises(InputError, match="does not increase"):  # zero on the requested sub-range only
        ef.schedule(ef.Profile.from_curve(s, np.where(s < 1, 0.0, s), 1), 12, "rescaled", sigma_max=0.5, interval="range")


@pytest.mark.parametrize("kwargs, match", [
    (dict(kind="cosine"), r"unknown schedule kind 'cosine'; known kinds: entropic, rescaled"),
    (dict(steps=1), "steps must be an integer >= 2, got 1"),
    (dict(sigma_max=100.0), r"sigma_max <= 80 \(the profiled grid\), got sigma_min=0.002, sigma_max=100.0"),
    (dict(sigma_min=1.0, sigma_max=0.5), "sigma_min < sigma_max"),
])
def test_bad_input(kwargs, match):
    args = {"steps": 8, "kind": "rescaled", **kwargs}
    with pytest.raises(InputError, match=match):
        ef.schedule(gaussian_profile(), args.pop("steps"), **args)


def test_cli_schedule_and_info(tmp_path, capsys):
    from entropic_fast.cli import main
    path = gaussian_profile().save(tmp_path / "g.npz")
    assert main(["schedule", str(path), "--steps", "8", "--kind", "entropic", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    np.testing.assert_allclose(out["sigmas"], ef.schedule(gaussian_profile(), 8, "entropic"), rtol=1e-15)
    assert main(["schedule", str(path), "--steps", "5"]) == 0
    assert len(capsys.readouterr().out.split()) == 6
    assert main(["info", str(path)]) == 0
    assert "128 sigmas in [0.002, 80]" in capsys.readouterr().out
    (tmp_path / "bad.npz").write_text("x")
    assert main(["info", str(tmp_path / "bad.npz")]) == 2
    assert "not a readable entropic_fast profile" in capsys.readouterr().err
    assert main(["schedule", str(path), "--steps", "1"]) == 2


def test_an_undertrained_profile_warns_and_cap_clips_it_to_the_trivial_bound():
    """Gaussian data (c = 0.5, d = 4, tr Cov = 1) with the error 30x too high above sigma 2, as an under-trained
    model's: a warning naming the worst sigma, and cap=True gives nearly the exact schedule."""
    s, d, c = ef.sigma_grid(128), 4, 0.5
    exact = d * s**2 * c**2 / (s**2 + c**2)
    bad = ef.Profile.from_curve(s, np.where(s > 2, 30 * exact, exact), d)
    data = torch.randn(20000, d, generator=torch.Generator().manual_seed(0)) * c
    true = ef.schedule(ef.Profile.from_curve(s, exact, d), 10, "rescaled", interval="range")
    with pytest.warns(UserWarning, match=r"exceeds the trivial bound .*worst at sigma 80: 30 against 0.99"):
        raw = ef.schedule(bad, 10, "rescaled", data=data, interval="range")
    capped = ef.schedule(bad, 10, "rescaled", data=data, cap=True, interval="range")
    assert np.sum(raw[:-1] > 2) >= np.sum(true[:-1] > 2) + 2  # the raw profile crowds the steps up high
    np.testing.assert_allclose(capped[1:-2], true[1:-2], rtol=0.06)
    bound = ef.schedules.trivial_bound(bad, data)
    np.testing.assert_allclose(bound, np.minimum(d * s**2, float(data.var(0).sum())), rtol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no tr Cov known: d s^2 alone, which this profile respects
        ef.schedule(ef.Profile.from_curve(s, np.minimum(exact * 1.5, d * s**2), d), 10, "rescaled")


def _gauss_profile():
    s = ef.sigma_grid(64)
    return ef.Profile.from_curve(s, 16 * s**2 * 0.25 / (s**2 + 0.25), 16)


@pytest.mark.parametrize("kind", ["rescaled", "edm", "beta", "simple", "kl_optimal"])
@pytest.mark.parametrize("smooth", [-1, "x", 0])
def test_smooth_is_a_flag_for_every_kind_and_the_band(kind, smooth):
    with pytest.raises(InputError, match="smooth must be True or False"):
        ef.schedule(_gauss_profile(), 8, kind, smooth=smooth)
    with pytest.raises(InputError, match="smooth must be True or False"):
        ef.schedule_band(_gauss_profile(), 8, smooth=smooth)


@pytest.mark.parametrize("rho", [0, -1, float("nan"), float("inf")])
def test_polyexponential_refuses_a_rho_that_is_not_positive(rho):
    with pytest.raises(InputError, match="rho must be"):
        ef.schedule(_gauss_profile(), 8, "polyexponential", rho=rho)


@pytest.mark.parametrize("kind, options, bounds", [
    ("polyexponential", {"rho": 1e6}, (0.002, 80.0)),  # every inner sigma at the bottom
    ("linear_quadratic", {}, (1.0, 1.0 + 1e-13)),
    ("rescaled", {}, (1.0, 1.0 + 1e-13)),
    ("edm", {}, (1.0, 1.0 + 1e-13)),
])
def test_a_schedule_that_would_not_descend_is_refused(kind, options, bounds):
    with pytest.raises(InputError, match="strictly descend|too narrow"):
        ef.schedule(_gauss_profile(), 8, kind, sigma_min=bounds[0], sigma_max=bounds[1], **options)


def test_steps_are_bounded_and_beta_is_fast_up_to_the_bound():
    import time
    with pytest.raises(InputError, match="steps must be at most 10,000"):
        ef.schedule(_gauss_profile(), 10**6, "beta")
    t = time.perf_counter()
    s = ef.schedule(_gauss_profile(), 10_000, "beta")
    assert time.perf_counter() - t < 10 and s.shape == (10_001,) and np.all(np.diff(s) < 0)


def test_gaussian_optimal_refuses_data_of_another_dimension():
    with pytest.raises(InputError, match="data rows hold 1 values, the profile's data 16"):
        ef.schedule(_gauss_profile(), 8, "gaussian-optimal", data=np.random.default_rng(0).normal(size=50))
