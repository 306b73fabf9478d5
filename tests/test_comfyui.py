"""The ComfyUI node contract and values, without ComfyUI (a MODEL is faked by its model_sampling)."""
import numpy as np
import pytest
import torch

import entropic_fast as ef
from entropic_fast.comfyui import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS


class CONST:  # ComfyUI's flow-matching mixin, by name
    pass


class ModelSamplingDiscreteFlow(CONST):
    pass


class ModelSamplingDiscrete:
    pass


class Model:
    def __init__(self, sampling):
        self.sampling = sampling

    def get_model_object(self, name):
        assert name == "model_sampling"
        return self.sampling


@pytest.fixture
def prof_path(tmp_path):
    grid = ef.sigma_grid(64, 0.03, 14.6)
    return str(ef.Profile.from_curve(grid, 4 * grid**2 * 0.25 / (grid**2 + 0.25), 4).save(tmp_path / "p.npz"))


def test_node_contract():
    assert set(NODE_CLASS_MAPPINGS) == set(NODE_DISPLAY_NAME_MAPPINGS) == {"EntropicScheduler", "EntropicProfile"}
    node = NODE_CLASS_MAPPINGS["EntropicScheduler"]
    spec = node.INPUT_TYPES()["required"]
    assert list(spec) == ["model", "profile", "steps", "kind", "denoise"] and spec["model"] == ("MODEL",)
    assert "rescaled" in spec["kind"][0] and node.RETURN_TYPES == ("SIGMAS",)
    assert callable(getattr(node(), node.FUNCTION))


def test_scheduler_values_denoise_and_flow_convention(prof_path):
    node = NODE_CLASS_MAPPINGS["EntropicScheduler"]()
    prof = ef.Profile.load(prof_path)
    (s,) = node.get_sigmas(Model(ModelSamplingDiscrete()), prof_path, 10, "rescaled", 1.0)
    torch.testing.assert_close(s, torch.tensor(ef.schedule(prof, 10, "rescaled"), dtype=torch.float32))
    (part,) = node.get_sigmas(Model(ModelSamplingDiscrete()), prof_path, 10, "rescaled", 0.5)
    full = torch.tensor(ef.schedule(prof, 20, "rescaled"), dtype=torch.float32)
    torch.testing.assert_close(part, full[-11:])  # BasicScheduler's denoise: the last steps of a longer schedule
    (t,) = node.get_sigmas(Model(ModelSamplingDiscreteFlow()), prof_path, 10, "rescaled", 1.0)
    torch.testing.assert_close(t, s / (1 + s))
    assert float(t[0]) < 1 and float(t[-1]) == 0
    (none,) = node.get_sigmas(Model(ModelSamplingDiscrete()), prof_path, 10, "rescaled", 0.0)
    assert none.numel() == 0
    assert np.all(np.diff(s.numpy()) < 0)


def test_scheduler_reads_the_tuned_interval_and_spacing_for_its_sampler(tmp_path, prof_path):
    """A profile ``ef.tune`` wrote (its record, as tuning.py writes it): the node's sigmas for the tuned sampler and
    step count are the tuned schedule; another sampler's are the rule's."""
    node = NODE_CLASS_MAPPINGS["EntropicScheduler"]()
    prof = ef.Profile.load(prof_path)
    tuned = prof.with_meta(tuned={"dpmpp_2m/8/rescaled": {"interval": [0.05, 3.0], "spacing": "edm"}})
    path = str(tuned.save(tmp_path / "tuned.npz"))
    (s,) = node.get_sigmas(Model(ModelSamplingDiscrete()), path, 8, "rescaled", 1.0, "dpmpp_2m")
    want = ef.schedule(prof, 8, "edm", sampler="dpmpp_2m", interval=(0.05, 3.0))
    torch.testing.assert_close(s, torch.tensor(want, dtype=torch.float32))
    (e,) = node.get_sigmas(Model(ModelSamplingDiscrete()), path, 8, "rescaled", 1.0, "euler")
    torch.testing.assert_close(e, torch.tensor(ef.schedule(prof, 8, sampler="euler"), dtype=torch.float32))


# --- EntropicProfile: a fake ComfyUI BaseModel with ComfyUI's conventions (model_sampling.py, conds.py,
# model_base.BaseModel._apply_model), over the exact Gaussian denoiser.

class EPS:  # x = x0 + s n; the network sees x / sqrt(s^2 + 1) and predicts the noise
    def calculate_input(self, sigma, x):
        return x / (sigma.view(-1, 1, 1, 1) ** 2 + 1) ** 0.5

    def calculate_denoised(self, sigma, out, x):
        return x - out * sigma.view(-1, 1, 1, 1)


class FlowConst(CONST):  # x_t = (1 - t) x0 + t n at sigma = t; the network predicts v = n - x0
    def calculate_input(self, sigma, x):
        return x

    def calculate_denoised(self, sigma, out, x):
        return x - out * sigma.view(-1, 1, 1, 1)


class EpsSampling(ModelSamplingDiscrete, EPS):
    sigma_min, sigma_max = torch.tensor(0.0292), torch.tensor(14.6146)


class FlowSampling(FlowConst):
    sigma_min, sigma_max = torch.tensor(0.001), torch.tensor(1.0)


class CondCrossAttn:  # comfy.conds.CONDCrossAttn: repeated to the batch by process_cond
    def __init__(self, cond):
        self.cond = cond

    def process_cond(self, batch_size, device, **kwargs):
        return CondCrossAttn(self.cond.repeat(batch_size // self.cond.shape[0], 1, 1).to(device))


class FakeBase(torch.nn.Module):
    """What ComfyUI's BaseModel does around a network, the network being the exact Gaussian denoiser
    (plus the mean of the cross-attention context, so that conditioning shows)."""

    def __init__(self, sampling, gauss, latent_scale=0.5):
        super().__init__()
        self.model_sampling, self.gauss, self.latent_scale = sampling, gauss, latent_scale
        self.weight = torch.nn.Parameter(torch.ones(()))
        self.calls = []

    def process_latent_in(self, latent):
        return latent * self.latent_scale

    def extra_conds(self, cross_attn=None, device=None, noise=None, **kwargs):
        assert noise is not None and device is not None
        return {"c_crossattn": CondCrossAttn(cross_attn)}

    def apply_model(self, x, t, c_crossattn=None):
        ms, s = self.model_sampling, t.view(-1, 1, 1, 1)
        xc = ms.calculate_input(t, x)
        flow = isinstance(ms, FlowConst)
        s_ve = s / (1 - s) if flow else s
        x_ve = xc * (1 + s_ve) if flow else xc * (s ** 2 + 1) ** 0.5
        d = self.gauss(x_ve, s_ve.reshape(-1)).float()
        if c_crossattn is not None:
            assert c_crossattn.shape[0] == x.shape[0]
            d = d + c_crossattn.mean(dim=(1, 2)).view(-1, 1, 1, 1)
        self.calls.append(x.shape[0])
        out = (x - d) / s  # eps for EPS, v for flow: both x - out * sigma = d
        return ms.calculate_denoised(t, out, x)


class Patcher(Model):
    def __init__(self, base):
        super().__init__(base.model_sampling)
        self.model = base


class Bar:  # comfy.utils.ProgressBar's update(n); raises after `stop` rows, as ComfyUI's cancel does
    def __init__(self, stop=None):
        self.rows, self.stop = 0, stop

    def update(self, n):
        self.rows += n
        if self.stop is not None and self.rows >= self.stop:
            raise KeyboardInterrupt("cancelled")


@pytest.mark.parametrize("sampling", [EpsSampling, FlowSampling])
def test_profile_node_matches_the_library_on_the_same_draws(tmp_path, sampling):
    from entropic_fast.comfyui.nodes import EntropicProfile, profile_latents
    gauss = ef.analytic.Gaussian(torch.linspace(0.2, 2.0, 16).reshape(1, 4, 4))
    latents = {"samples": (gauss.sample(24, torch.Generator().manual_seed(1)) * 2).float()}
    base = FakeBase(sampling(), gauss)
    (path,) = EntropicProfile().run(Patcher(base), latents, str(tmp_path / "p.npz"), 32, 16, 3)
    prof = ef.Profile.load(path)
    lo, hi = (0.0292, 14.6146) if sampling is EpsSampling else (0.001 / 0.999, 199.0)
    np.testing.assert_allclose(prof.sigmas[[0, -1]], [lo, hi], rtol=1e-5)
    ref = ef.profile(gauss, latents["samples"] * 0.5, prof.sigmas, samples=32, seed=3, progress=False)
    np.testing.assert_allclose(prof.mse, ref.mse, rtol=2e-4)  # same draws, ComfyUI's arithmetic around them
    assert not (tmp_path / "p.npz.ckpt").exists() and base.calls
    # conditioning reaches the model as ComfyUI sends it: repeated to the batch
    cond = torch.full((1, 3, 8), 0.25)
    prof_c = profile_latents(Patcher(base), latents, str(tmp_path / "c.npz"), samples=32, points=16, seed=3,
                             conditioning=[[cond, {}]])
    ref_c = ef.profile(lambda x, s: gauss(x, s) + 0.25, latents["samples"] * 0.5, prof.sigmas, samples=32, seed=3,
                       progress=False)
    np.testing.assert_allclose(prof_c.mse, ref_c.mse, rtol=2e-4)
    assert not np.allclose(prof_c.mse, prof.mse, rtol=1e-2)


def test_profile_node_progress_and_cancel_resume(tmp_path):
    from entropic_fast.comfyui.nodes import profile_latents
    gauss = ef.analytic.Gaussian(0.5, (1, 4, 4))
    latents = {"samples": gauss.sample(16, torch.Generator().manual_seed(0)).float()}
    path = str(tmp_path / "p.npz")
    args = dict(samples=64, points=8, seed=0, batch_size=64)
    whole = profile_latents(Patcher(FakeBase(EpsSampling(), gauss)), latents, str(tmp_path / "w.npz"), **args)
    import entropic_fast.comfyui.nodes as nodes
    utils = type("utils", (), {"ProgressBar": staticmethod(lambda total: Bar(stop=total // 2))})
    real = nodes._comfy
    try:
        nodes._comfy = lambda name: utils if name == "comfy.utils" else None
        with pytest.raises(KeyboardInterrupt):
            profile_latents(Patcher(FakeBase(EpsSampling(), gauss)), latents, path, **args)
        assert (tmp_path / "p.npz.ckpt").exists()  # the cancelled run kept what it had
        bars = []
        nodes._comfy = lambda name: (type("utils", (), {"ProgressBar": staticmethod(
            lambda total: bars.append(Bar()) or bars[-1])}) if name == "comfy.utils" else None)
        resumed = profile_latents(Patcher(FakeBase(EpsSampling(), gauss)), latents, path, **args)
    finally:
        nodes._comfy = real
    assert bars[0].rows == 8 * 64  # the bar starts where the checkpoint left off and ends full
    np.testing.assert_array_equal(resumed.count, whole.count)
    np.testing.assert_allclose(resumed.mse, whole.mse, rtol=1e-12)
    assert not (tmp_path / "p.npz.ckpt").exists()


def test_profile_node_refuses_what_is_not_a_latent(tmp_path):
    from entropic_fast.comfyui.nodes import profile_latents
    from entropic_fast.errors import InputError
    base = FakeBase(EpsSampling(), ef.analytic.Gaussian(0.5, (1, 4, 4)))
    with pytest.raises(InputError, match="LATENT"):
        profile_latents(Patcher(base), torch.zeros(4, 1, 4, 4), str(tmp_path / "p.npz"))
    with pytest.raises(InputError, match="not a ComfyUI MODEL"):
        profile_latents(object(), {"samples": torch.zeros(4, 1, 4, 4)}, str(tmp_path / "p.npz"))


@pytest.mark.parametrize("conditioning", ["a photo", 5, {"cond": 1}, [torch.zeros(1, 2)], [["text", {}]],
                                          [[torch.zeros(1, 2), "pooled"]], [[torch.zeros(1, 2), {}, "extra"]]])
def test_profile_node_refuses_what_is_not_a_conditioning(tmp_path, conditioning):
    """Issue 39: a CONDITIONING is a list of [tensor, dict] pairs (CLIP Text Encode's); anything else is named
    before the run, not a ValueError from inside the first batch."""
    from entropic_fast.comfyui.nodes import profile_latents
    from entropic_fast.errors import InputError
    base = FakeBase(EpsSampling(), ef.analytic.Gaussian(0.5, (1, 4, 4)))
    with pytest.raises(InputError, match="conditioning must be a ComfyUI CONDITIONING"):
        profile_latents(Patcher(base), {"samples": torch.zeros(4, 1, 4, 4)}, str(tmp_path / "p.npz"),
                        conditioning=conditioning, samples=4, points=8)
    assert not (tmp_path / "p.npz").exists()
