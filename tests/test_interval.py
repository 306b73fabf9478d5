"""Where a schedule starts and stops (``entropic_fast.interval``): on Gaussian data the rule's interval is the one
that minimises the closed-form Frechet distance of DDIM started from pure noise (written here as the product
formula of docs/design.md section 1, not through ``gaussian.sampler_gain``); bounds, overrides, samplers."""
import numpy as np
import pytest
import torch

import entropic_fast as ef
from entropic_fast import grids, interval, samplers

C, D = 0.5, 16
S = ef.sigma_grid(128)
GAUSS = ef.Profile.from_curve(S, D * S**2 * C**2 / (S**2 + C**2), D)


def ddim_fd(sigmas, lam=C**2, d=D):
    """W2^2 between N(0, lam I_d) and deterministic DDIM's output from N(0, s_0^2) through ``sigmas`` (ending in 0):
    the output variance is ``s_0^2 prod_k ((lam + s_k s_{k+1}) / (lam + s_k^2))^2``."""
    s = np.asarray(sigmas, np.float64)
    v = s[0] ** 2 * np.prod(((lam + s[:-1] * s[1:]) / (lam + s[:-1] ** 2)) ** 2)
    return d * (np.sqrt(v) - np.sqrt(lam)) ** 2


def brute_force(steps):
    """The smallest :func:`ddim_fd` over tangent laws (the Gaussian's rescaled schedule) on a fine grid of ends."""
    best = (np.inf, None)
    for a in np.geomspace(0.002, 5, 160):
        for b in np.geomspace(0.05, 80, 160):
            if b > 1.5 * a:
                fd = ddim_fd(grids.tangent(steps, a, b, C))
                best = min(best, (fd, (a, b)), key=lambda t: t[0])
    return best


@pytest.mark.parametrize("steps", [3, 4, 8, 16])
def test_on_a_gaussian_the_interval_minimises_the_closed_form(steps):
    s = ef.schedule(GAUSS, steps, "rescaled")
    np.testing.assert_allclose(s, grids.tangent(steps, s[-2], s[0], C), rtol=5e-5)  # the spacing: the tangent law
    fd, (a, b) = brute_force(steps)
    assert ddim_fd(s) <= 1.03 * fd + 1e-12
    assert s[-2] == pytest.approx(a, rel=0.25) and s[0] == pytest.approx(b, rel=0.25)
    assert ddim_fd(s) < ddim_fd(ef.schedule(GAUSS, steps, "rescaled", interval="range"))


def test_the_stop_falls_and_the_start_rises_with_the_budget():
    ends = [ef.schedule(GAUSS, k, "rescaled")[[0, -2]] for k in (3, 4, 8, 16, 32)]
    starts, stops = zip(*ends)
    assert np.all(np.diff(starts) > 0) and np.all(np.diff(stops) < 0)


def test_bounds_are_kept_and_the_overrides_are_one_argument():
    s = ef.schedule(GAUSS, 8, "rescaled", sigma_min=0.1, sigma_max=2.0)
    assert 0.1 <= s[-2] and s[0] <= 2.0
    full = ef.schedule(GAUSS, 8, "rescaled", sigma_min=0.1, sigma_max=2.0, interval="range")
    assert full[0] == 2.0 and full[-2] == 0.1
    given = ef.schedule(GAUSS, 8, "rescaled", interval=(0.3, 5.0))
    assert given[0] == 5.0 and given[-2] == 0.3
    for bad in ("middle", (5.0, 0.3), (0.3, 500.0), 3.0):
        with pytest.raises(ef.InputError, match="interval"):
            ef.schedule(GAUSS, 8, "rescaled", interval=bad)


def test_classic_kinds_and_peers_keep_the_range_ours_choose():
    assert ef.schedule(GAUSS, 8, "edm")[0] == 80.0 and ef.schedule(GAUSS, 8, "kl_optimal")[-2] == S[0]
    for kind in ("entropic", "rescaled", "las"):
        assert ef.schedule(GAUSS, 8, kind)[0] < 80.0
    # and a peer on our interval is one argument away (compare's same-ends control)
    ends = ef.schedules.ends(GAUSS, 8, "rescaled")
    s = ef.schedule(GAUSS, 8, "kl_optimal", interval=ends)
    assert (s[-2], s[0]) == pytest.approx(ends)


def test_samplers_by_any_of_their_names_and_the_default_kind():
    for alias, name in (("euler", "ddim"), ("euler_ancestral", "ddim-stochastic")):
        np.testing.assert_array_equal(ef.schedule(GAUSS, 8, sampler=alias), ef.schedule(GAUSS, 8, sampler=name))
    np.testing.assert_array_equal(ef.schedule(GAUSS, 8), ef.schedule(GAUSS, 8, samplers.get("ddim").kind))
    with pytest.raises(ef.InputError, match="unknown sampler 'lms'.*dpmpp_2m"):
        ef.schedule(GAUSS, 8, sampler="lms")


def test_the_stochastic_sampler_is_charged_its_own_noise():
    """Stochastic DDIM forgets its start: its rule starts lower than deterministic DDIM's."""
    assert ef.schedule(GAUSS, 8, sampler="ddim-stochastic")[0] < ef.schedule(GAUSS, 8, sampler="ddim")[0]


def test_frechet_of_many_schedules_at_once_equals_one_by_one():
    lam, w = np.array([0.01, 0.25, 2.0]), np.array([3.0, 1.0, 2.0])
    many = np.stack([grids.tangent(6, a, b, 0.5) for a, b in ((0.01, 10.0), (0.1, 3.0))], axis=1)[:, :, None]
    for sampler in ("ddim", "ddim-stochastic", "heun", "dpmpp_2m"):
        both = interval.frechet(many, lam, w, sampler)
        one = [float(interval.frechet(many[:, j], lam, w, sampler)) for j in range(2)]
        np.testing.assert_allclose(both, one, rtol=1e-12)
    # and for DDIM it is the product formula above
    s = grids.tangent(6, 0.1, 3.0, 0.5)
    assert float(interval.frechet(s[:, None], np.array([C**2]), np.array([D]), "ddim")) == pytest.approx(ddim_fd(s))


def test_the_band_holds_the_ends():
    prof = ef.Profile.from_curve(S, GAUSS.mse, D)
    lower, upper = ef.schedule_band(prof, 8, "rescaled")
    s = ef.schedule(prof, 8, "rescaled")
    np.testing.assert_allclose(lower, s) and np.testing.assert_allclose(upper, s)


def test_the_samplers_start_from_the_first_sigma_whatever_it_is():
    """A schedule that starts below the model's top: the sampler starts from noise at its first sigma."""
    g = ef.analytic.Gaussian(torch.full((4,), C**2), (4,))
    s = torch.as_tensor(ef.schedule(ef.Profile.from_curve(S, 4 * S**2 * C**2 / (S**2 + C**2), 4), 8, "rescaled"))
    x = torch.randn(20000, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * s[0]
    out = samplers.ddim(g, x, s)
    v = float(out.var())
    want = ddim_fd(s.numpy(), d=1)  # W2^2 per direction = (sqrt(v) - c)^2
    assert (np.sqrt(v) - C) ** 2 == pytest.approx(want, abs=5e-4)
