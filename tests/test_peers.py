"""The peer schedules (ComfyUI's and A1111's schedulers, Align-Your-Steps' lists), each against the formula or list
it comes from, written here another way, and the contract every kind keeps."""
import math

import numpy as np
import pytest
import torch

import entropic_fast as ef
from entropic_fast import grids, kinds, peers

S = ef.sigma_grid(64)
GAUSS = ef.Profile.from_curve(S, 4 * S**2 * 0.25 / (S**2 + 0.25), 4)


def raw(kind, steps):
    """A peer's schedule on SD's own range, where the mapping is the identity."""
    table = peers.sd_sigmas()
    prof = ef.Profile.from_curve(np.geomspace(table[0], table[-1], 32), np.ones(32), 1)
    return ef.schedule(prof, steps, kind)


@pytest.mark.parametrize("kind", kinds.PEER_KINDS)
@pytest.mark.parametrize("steps", [2, 3, 7, 10, 16, 33, 100])
def test_every_peer_starts_at_the_top_stays_in_the_range_and_descends(kind, steps):
    s = ef.schedule(GAUSS, steps, kind, sigma_min=0.01, sigma_max=20.0)
    top = s[0] <= 20.0 if kind == "ddim_uniform" else s[0] == 20.0  # ComfyUI's ddim_uniform starts below the top
    assert s.shape == (steps + 1,) and top and s[-2] >= 0.01 and s[-1] == 0
    assert np.all(np.diff(s) < 0)


# ---- ComfyUI's own code (comfy/samplers.py and comfy_extras/nodes_align_your_steps.py at a125cd8), imitated
# statement by statement in torch float32 on a ModelSamplingDiscrete of SD's table, to check the peers against

class _ModelSampling:
    """ComfyUI's ModelSamplingDiscrete for SD (scaled_linear 0.00085..0.012): float32 sigmas, log-sigma lookup."""

    def __init__(self):
        betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
        ac = torch.cumprod(1.0 - betas, dim=0)
        self.sigmas = (((1 - ac) / ac) ** 0.5).float()
        self.log_sigmas = self.sigmas.log()
        self.sigma_min, self.sigma_max = self.sigmas[0], self.sigmas[-1]

    def timestep(self, sigma):
        dists = torch.as_tensor(sigma).log() - self.log_sigmas[:, None]
        return dists.abs().argmin(dim=0).view(torch.as_tensor(sigma).shape)

    def sigma(self, timestep):
        t = torch.clamp(torch.as_tensor(timestep).float(), min=0, max=len(self.sigmas) - 1)
        low, high = t.floor().long(), t.ceil().long()
        w = t.frac()
        return ((1 - w) * self.log_sigmas[low] + w * self.log_sigmas[high]).exp()


def _comfy(kind, steps):
    ms = _ModelSampling()
    if kind == "simple":
        ss = len(ms.sigmas) / steps
        return [float(ms.sigmas[-(1 + int(x * ss))]) for x in range(steps)]
    if kind in ("normal", "sgm_uniform"):
        start, end = ms.timestep(ms.sigma_max), ms.timestep(ms.sigma_min)
        ts = torch.linspace(start, end, steps + 1)[:-1] if kind == "sgm_uniform" else torch.linspace(start, end, steps)
        return [float(ms.sigma(t)) for t in ts]
    if kind == "ddim_uniform":
        ss, x, sigs = max(len(ms.sigmas) // steps, 1), 1, []
        while x < len(ms.sigmas):
            sigs.append(float(ms.sigmas[x]))
            x += ss
        return sigs[::-1]
    if kind == "beta":
        from scipy import stats
        ts = np.rint(stats.beta.ppf(1 - np.linspace(0, 1, steps, endpoint=False), 0.6, 0.6) * 999)
        return [float(ms.sigmas[int(t)]) for t in dict.fromkeys(ts)]
    if kind == "linear_quadratic":
        return (torch.FloatTensor(list(1 - peers.linear_quadratic(steps))).neg() + 1).mul(ms.sigma_max).tolist()
    model = {"ays-sd15": "sd15", "ays-sdxl": "sdxl"}[kind]
    levels = np.array(peers.AYS[model])
    if steps + 1 != levels.size:  # their loglinear_interp
        levels = np.exp(np.interp(np.linspace(0, 1, steps + 1), np.linspace(0, 1, levels.size), np.log(levels[::-1])))[::-1]
    return [float(v) for v in torch.FloatTensor(levels.copy())[:-1]]


@pytest.mark.parametrize("kind", ["simple", "normal", "sgm_uniform", "ddim_uniform", "beta", "linear_quadratic",
                                  "ays-sd15", "ays-sdxl"])
@pytest.mark.parametrize("steps", [3, 4, 8, 10, 16, 25])
def test_on_sds_range_each_peer_is_comfyuis_own_output(kind, steps):
    want = _comfy(kind, steps)
    got = raw(kind, steps)[:-1]
    if kind == "ddim_uniform" and len(want) == steps + 1:  # documented: ComfyUI gives one more; we leave out the top
        want = want[1:]
    if kind == "beta" and len(want) < steps:  # documented: ComfyUI drops a repeat; we keep steps distinct sigmas,
        assert len(got) == steps and len(set(got.tolist())) == steps  # unrounded quantiles of the same Beta law
        np.testing.assert_allclose(got[[0, -1]], [want[0], want[-1]], rtol=2e-6)  # with ComfyUI's ends
        return
    np.testing.assert_allclose(got, want, rtol=2e-6)


def test_sd_table_has_the_published_ends():
    table = peers.sd_sigmas()
    assert table.size == 1000 and np.all(np.diff(table) > 0)
    np.testing.assert_allclose([table[0], table[-1]], [0.0291671582, 14.6146412293], rtol=1e-7)


def test_normal_at_whole_timesteps_is_the_table():
    table = peers.sd_sigmas()
    np.testing.assert_allclose(raw("normal", 4)[:-1], table[[999, 666, 333, 0]], rtol=1e-6)
    np.testing.assert_allclose(peers.normal(1000), table[::-1], rtol=1e-6)


def test_sgm_uniform_interpolates_log_sigma_between_entries():
    table = peers.sd_sigmas()
    t = 999 * 3 / 4  # the second of linspace(999, 0, 5)[:-1]
    want = math.exp((1 - (t % 1)) * math.log(table[int(t)]) + (t % 1) * math.log(table[int(t) + 1]))
    assert peers.normal(4, sgm=True)[1] == pytest.approx(want, rel=1e-6)
    assert peers.normal(4, sgm=True)[0] == pytest.approx(table[-1], rel=1e-7)


def test_simple_and_ddim_uniform_stride_through_the_table():
    table = peers.sd_sigmas()
    np.testing.assert_array_equal(peers.simple(10), table[::-1][::100])
    np.testing.assert_array_equal(peers.ddim_uniform(10), table[1::100][::-1])
    assert peers.ddim_uniform(16).size == 16  # ComfyUI's rule gives 17 here: the largest is left out


def test_beta_quantiles_match_scipy():
    from scipy import stats  # a test extra
    for a, b in ((0.6, 0.6), (0.5, 2.0), (3.0, 0.7)):
        for q in (1e-6, 0.01, 0.3, 0.5, 0.77, 0.999999):
            assert peers.beta_ppf(q, a, b) == pytest.approx(stats.beta.ppf(q, a, b), rel=1e-9, abs=1e-12)
    table = peers.sd_sigmas()
    t = np.rint(stats.beta.ppf(1 - np.arange(8) / 8, 0.6, 0.6) * 999).astype(int)
    np.testing.assert_allclose(peers.beta(8), table[t], rtol=1e-6)


def test_linear_quadratic_is_continuous_and_reaches_one():
    for steps in (2, 8, 25):
        x = 1 - peers.linear_quadratic(steps)
        half = steps // 2
        assert x[0] == 0 and np.all(np.diff(x) > 0)
        np.testing.assert_allclose(np.diff(x[:half + 1])[:half - 1] if half > 1 else [], 0.025 / half, rtol=1e-12)
        assert x[half] == pytest.approx(0.025, rel=1e-12)  # the linear part ends at the threshold
        d = half - 0.025 * steps  # the quadratic part reaches 1 at i = steps
        qc, lc = d / (half * (steps - half) ** 2), 0.025 / half - 2 * d / (steps - half) ** 2
        assert qc * steps**2 + lc * steps + qc * half**2 == pytest.approx(1.0, rel=1e-12)


def test_kl_optimal_is_the_tangent_law_of_scale_one_and_polyexponential_generalises_exponential():
    np.testing.assert_allclose(ef.schedule(GAUSS, 12, "kl_optimal"), grids.tangent(12, S[0], S[-1], 1.0), rtol=1e-12)
    np.testing.assert_allclose(ef.schedule(GAUSS, 12, "polyexponential"), ef.schedule(GAUSS, 12, "exponential"),
                               rtol=1e-12)
    s = ef.schedule(GAUSS, 6, "polyexponential", rho=2.0)[:-1]
    ramp = np.linspace(1, 0, 6) ** 2
    np.testing.assert_allclose(s, S[0] * (S[-1] / S[0]) ** ramp, rtol=1e-12)


@pytest.mark.parametrize("model", ["sd15", "sdxl", "svd"])
def test_ays_reproduces_the_published_list_and_interpolates_in_log_sigma(model):
    published = np.array(peers.AYS[model])
    np.testing.assert_allclose(peers.ays(model, 10), published[:-1], rtol=1e-12)  # 11 levels, the last one 0
    mid = peers.ays_levels(model, 21)[1::2]  # halfway between published neighbours in log sigma
    np.testing.assert_allclose(mid, np.sqrt(published[:-1] * published[1:]), rtol=1e-12)
    if model != "svd":  # SD's lists are made for SD's table: on its range the mapping leaves them as published
        np.testing.assert_allclose(raw(f"ays-{model}", 10)[:-1], published[:-1], rtol=2e-8)


def test_onto_keeps_the_shape_in_log_sigma():
    t = np.array([10.0, 1.0, 0.1])
    np.testing.assert_allclose(peers.onto(t, 0.002, 80.0), [80.0, math.sqrt(80 * 0.002), 0.002, 0.0], rtol=1e-12)
    # from a source range: a sigma at its middle (in log) lands at the middle of the target
    np.testing.assert_allclose(peers.onto([100.0, 1.0], 0.01, 1.0, source=(0.01, 100.0)), [1.0, 0.1, 0.0],
                               rtol=1e-12)
    with pytest.raises(ef.InputError, match="strictly descending"):
        peers.onto([1.0, 1.0], 0.1, 1.0)


def test_too_many_steps_for_a_table_is_refused():
    with pytest.raises(ef.InputError, match="distinct sigmas for 1200 steps"):
        ef.schedule(GAUSS, 1200, "ddim_uniform")
