import json
import types
import warnings

import diffusers
import numpy as np
import pytest
import torch

import entropic_fast as ef
from entropic_fast.adapters import diffusers as dfa
from entropic_fast.adapters import edm, flow, kdiffusion
from entropic_fast.errors import InputError

def tiny_unet():
    torch.manual_seed(0)
    return diffusers.UNet2DModel(sample_size=8, in_channels=1, out_channels=1, layers_per_block=1,
                                 block_out_channels=(8, 16), norm_num_groups=4,
                                 down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D")).eval()


def euler():
    return diffusers.EulerDiscreteScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear")


# ---------------------------------------------------------------- diffusers VP models


class GaussianVP(torch.nn.Module):
    """The exact N(0, var) model in diffusers' VP parameterisation, predicting eps, v or x0 from (x_vp, t)."""

    def __init__(self, scheduler, var, prediction):
        super().__init__()
        self.ls = torch.log(((1 - scheduler.alphas_cumprod.double()) / scheduler.alphas_cumprod.double()).sqrt())
        self.var, self.prediction = var, prediction

    def forward(self, x_vp, t):
        lo = t.double().floor().long().clamp(0, len(self.ls) - 2)
        s = torch.exp(self.ls[lo] + (t.double() - lo) * (self.ls[lo + 1] - self.ls[lo])).view(-1, 1, 1, 1)
        x = x_vp.double() * (1 + s**2).sqrt()
        x0 = x * self.var / (self.var + s**2)
        eps = (x - x0) / s
        a, b = 1 / (1 + s**2).sqrt(), s / (1 + s**2).sqrt()  # sqrt(alpha_bar), sqrt(1 - alpha_bar)
        out = {"epsilon": eps, "v_prediction": a * eps - b * x0, "sample": x0}[self.prediction]
        return types.SimpleNamespace(sample=out)  # like UNet2DOutput


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction", "sample"])
def test_vp_adapter_is_exact_on_a_gaussian(prediction):
    sched = euler()
    den = dfa.denoiser(GaussianVP(sched, 0.3, prediction), sched, prediction_type=prediction)
    gauss = ef.analytic.Gaussian(0.3, (1, 4, 4))
    x = torch.randn(6, 1, 4, 4, dtype=torch.float64) * 3
    sigma = torch.tensor([0.03, 0.1, 0.7, 2.0, 9.0, 14.0], dtype=torch.float64)
    torch.testing.assert_close(den(x, sigma), gauss(x, sigma), rtol=1e-10, atol=1e-12)


def test_real_unet_profiles_and_euler_takes_our_sigmas():
    sched = euler()
    den = dfa.denoiser(tiny_unet(), sched)
    grid = ef.sigma_grid(12, den.sigma_min, den.sigma_max)
    prof = ef.profile(den, torch.randn(64, 1, 8, 8), grid, samples=32, progress=False)  # 16: within 4 stderr
    assert np.all(np.isfinite(prof.mse)) and prof.meta["model"].startswith("diffusers VP adapter")
    with pytest.warns(UserWarning, match="exceeds the trivial bound"):  # random weights: an untrained model
        sig = ef.schedule(prof, 10, "rescaled")
    sched.set_timesteps(**dfa.to_diffusers(sig, sched))
    np.testing.assert_allclose(sched.sigmas.numpy(), sig, rtol=1e-6)
    assert len(sched.timesteps) == 10 and torch.all(sched.timesteps[:-1] > sched.timesteps[1:])


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_flow_match_scheduler_takes_our_sigmas_with_its_shift_neutralised(shift):
    sched = diffusers.FlowMatchEulerDiscreteScheduler(shift=shift)
    sig = ef.grids.karras(8, 0.01, 50.0)
    sched.set_timesteps(**dfa.to_diffusers(sig, sched))
    np.testing.assert_allclose(sched.sigmas.numpy(), sig / (1 + sig), rtol=1e-5, atol=1e-7)


def test_timestep_only_and_unsupported_schedulers():
    ddpm = diffusers.DDPMScheduler(num_train_timesteps=1000)
    sig = ef.grids.karras(6, 0.05, 50.0)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        kw = dfa.to_diffusers(sig, ddpm)
    assert "timesteps only" in str(w[0].message)
    ddpm.set_timesteps(**kw)
    assert ddpm.timesteps.tolist() == kw["timesteps"]
    with pytest.raises(InputError, match="DDIMScheduler.set_timesteps accepts neither sigmas= nor timesteps="):
        dfa.to_diffusers(sig, diffusers.DDIMScheduler())


# ---------------------------------------------------------------- flow models


def test_flow_adapter_is_exact_on_a_gaussian():
    var = 0.4

    def velocity(xt, t):  # exact v = E[n - x0 | x_t] for x0 ~ N(0, var)
        t = t.double().view(-1, 1)
        cov = (1 - t) ** 2 * var + t**2
        return xt.double() * (t - (1 - t) * var) / cov

    den = flow.denoiser(velocity)
    x = torch.randn(5, 3, dtype=torch.float64) * 2
    sigma = torch.tensor([0.01, 0.3, 1.0, 5.0, 70.0], dtype=torch.float64)
    torch.testing.assert_close(den(x, sigma), ef.analytic.Gaussian(var, (3,))(x, sigma), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(flow.t_to_sigma(flow.flow_times([3.0, 1.0, 0.0])), [3.0, 1.0, 0.0])


# ---------------------------------------------------------------- EDM / EDM2


class ToyEDM(torch.nn.Module):
    """An EDM-style conditional net: returns the class id as the image (so labels can be checked)."""
    label_dim = 4

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(()))
        self.calls = []

    def forward(self, x, sigma, class_labels=None, force_fp32=False):
        self.calls.append((x.dtype, torch.is_autocast_enabled('cpu'), force_fp32))
        return (class_labels.argmax(1).to(x.dtype) * self.w).view(-1, *([1] * (x.ndim - 1))).expand_as(x)


def test_edm_adapter_one_hot_labels_autocast_and_refusal():
    net = ToyEDM()
    data = torch.arange(4.0).repeat_interleave(5).view(20, 1, 1, 1).expand(20, 1, 2, 2).contiguous()
    labels = torch.arange(4).repeat_interleave(5)
    p = ef.profile(edm.denoiser(net, dtype=torch.bfloat16, force_fp32=True), data, ef.sigma_grid(4), samples=8,
                   labels=labels, progress=False)
    assert np.all(p.sum == 0), "one-hot labels must follow their rows"
    assert all(autocast and fp32 for _, autocast, fp32 in net.calls)
    with pytest.raises(InputError, match=r"class-conditional \(label_dim=4\): pass labels="):
        ef.profile(edm.denoiser(net), data, ef.sigma_grid(4), samples=4, progress=False)


def test_logvar_fast_path_needs_a_logvar_head():
    with pytest.raises(InputError, match="has no EDM2 logvar head"):
        edm.logvar_mse(ToyEDM(), [0.1, 1.0], 4)


# ---------------------------------------------------------------- k-diffusion style and the CLI


def test_get_sigmas_entropic():
    s = ef.sigma_grid()
    prof = ef.Profile.from_curve(s, 3 * s**2 * 0.25 / (s**2 + 0.25), 3)
    got = kdiffusion.get_sigmas_entropic(12, prof, "rescaled")
    assert got.dtype == torch.float32 and got.shape == (13,) and got[-1] == 0 and torch.all(got[:-1] > got[1:])
    np.testing.assert_allclose(got.numpy(), ef.schedule(prof, 12, "rescaled"), rtol=1e-6)


def test_cli_profile_and_schedule_formats(tmp_path, capsys):
    from entropic_fast.cli import main
    np.save(tmp_path / "data.npy", np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32))
    out = tmp_path / "p.npz"
    assert main(["profile", "--model", "tests_factory:gaussian", "--data", str(tmp_path / "data.npy"), "--out", str(out),
                 "--samples", "16", "--grid", "0.01", "10", "8", "--quiet"]) == 0
    assert ef.Profile.load(out).sigmas.size == 8
    capsys.readouterr()
    assert main(["schedule", str(out), "--steps", "5", "--format", "diffusers"]) == 0
    kw = json.loads(capsys.readouterr().out)
    assert len(kw["sigmas"]) == 6 and kw["sigmas"][-1] == 0
    assert main(["schedule", str(out), "--steps", "5", "--format", "csv"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert rows[0] == "step,sigma" and len(rows) == 7
    assert main(["profile", "--model", "nomodule", "--data", "digits", "--out", str(out)]) == 2
    assert "MODULE:FACTORY" in capsys.readouterr().err


def test_logvar_fast_path_agrees_with_the_sampled_profile_of_the_shipped_model():
    from entropic_fast import digits
    net = digits.denoiser()
    x, _ = digits.load("train")
    grid = np.geomspace(0.005, 80.0, 12)
    sampled = ef.profile(net, x, grid, samples=256, progress=False)
    fast = edm.profile_from_logvar(net, grid, 64)
    ratio = fast.mse / sampled.mse
    assert np.all((ratio > 0.9) & (ratio < 1.25)), ratio  # measured 1.00 .. 1.10 (README)
    assert fast.meta["source"] == "EDM2 logvar"


def test_float32_model_limits_are_accepted_and_clamped():
    """k-diffusion's wrappers hold sigma_min/max as float32: a range equal up to float32 rounding is the grid's."""
    from entropic_fast.adapters.kdiffusion import get_sigmas_entropic
    prof = ef.Profile.from_curve(ef.sigma_grid(64, 0.0291675, 157.4072723388672 - 3e-6), np.geomspace(1e-3, 50, 64), 4)
    lo32, hi32 = float(np.float32(prof.sigmas[0])), float(np.float32(prof.sigmas[-1]))
    assert hi32 > prof.sigmas[-1] and lo32 != prof.sigmas[0]
    s = get_sigmas_entropic(10, prof, sigma_min=lo32, sigma_max=hi32, interval="range")  # the bounds themselves
    assert s.dtype == torch.float32 and s.shape == (11,) and float(s[-1]) == 0
    assert float(s[0]) == pytest.approx(prof.sigmas[-1], rel=1e-6)
    with pytest.raises(InputError, match="sigma_max <= 157.407"):
        get_sigmas_entropic(10, prof, sigma_max=prof.sigmas[-1] * (1 + 1e-5))


def test_a1111_scheduler_function_is_bound_to_its_profile():
    prof = ef.Profile.from_curve(ef.sigma_grid(64, 0.03, 14.6), np.geomspace(1e-3, 50, 64), 4)
    fn = kdiffusion.scheduler(prof, "rescaled")
    want = torch.tensor(ef.schedule(prof, 12, "rescaled"), dtype=torch.float32)
    torch.testing.assert_close(fn(12, float(np.float32(0.03)), float(np.float32(14.6)), "cpu"), want)
    torch.testing.assert_close(fn(n=12, sigma_min=0.03, sigma_max=14.6, device=torch.device("cpu")), want)
    assert fn.__name__ == "entropic_rescaled"
    torch.testing.assert_close(kdiffusion.scheduler(prof, "edm", rho=3.0)(5, 0.03, 14.6, "cpu"),
                               torch.tensor(ef.schedule(prof, 5, "edm", rho=3.0), dtype=torch.float32))


def test_vp_adapter_carries_the_networks_dtype_and_a_float32_timestep():
    """A bf16 UNet through the adapter: profile reads its dtype, the net gets bf16 inputs and float32 timesteps."""
    sched = euler()
    unet = tiny_unet().to(torch.bfloat16)
    seen = []
    unet.register_forward_pre_hook(lambda m, args: seen.append((args[0].dtype, args[1].dtype, args[1].clone())))
    den = dfa.denoiser(unet, sched)
    assert isinstance(den, torch.nn.Module) and den.dtype == torch.bfloat16 and den.device.type == "cpu"
    prof = ef.profile(den, torch.randn(32, 1, 8, 8), ef.sigma_grid(4, den.sigma_min, den.sigma_max), samples=8,
                      progress=False)
    assert prof.meta["dtype"] == "bfloat16" and np.all(np.isfinite(prof.mse))
    assert {(a, b) for a, b, _ in seen} == {(torch.bfloat16, torch.float32)}
    t = den.timestep(torch.tensor([10.0]))
    assert float(t) != round(float(t))
    with torch.no_grad():
        den(torch.zeros(1, 1, 8, 8), torch.tensor([10.0]))
    assert float(seen[-1][2]) == pytest.approx(float(t), abs=1e-4)  # not rounded to bf16 (steps of 4 near 1000)


def test_logvar_fast_path_warns_outside_the_trained_range():
    from entropic_fast import digits
    net = digits.denoiser()
    grid = np.geomspace(0.002, 80.0, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        edm.logvar_mse(net, grid, 64)  # the shipped model drew sigmas over all of [0.002, 80]
    with pytest.warns(UserWarning, match=r"6 of 16 sigmas \(0.002 .. 0.0684\) lie outside \[0.1, 80\]"):
        edm.profile_from_logvar(net, grid, 64, trained_range=(0.1, 80.0))
    del net.trained_range
    lo, hi = edm.EDM2_TRAINED_RANGE
    assert lo == pytest.approx(0.0334, rel=1e-3) and hi == pytest.approx(13.46, rel=1e-3)
    with pytest.warns(UserWarning, match="where the logvar head was trained"):
        edm.logvar_mse(net, grid, 64)


# ---------------------------------------------------------------- every diffusers scheduler gets our sigmas


def vp_profile(lo, hi):
    grid = ef.sigma_grid(64, lo, hi)
    return ef.Profile.from_curve(grid, 16 * grid**2 * 0.25 / (grid**2 + 0.25), 16)


def test_edm_euler_takes_our_sigmas_through_its_karras_ramp():
    sched = diffusers.EDMEulerScheduler()
    sig = ef.schedule(vp_profile(sched.config.sigma_min, sched.config.sigma_max), 12, "rescaled")
    sched.set_timesteps(**dfa.to_diffusers(sig, sched))
    np.testing.assert_allclose(sched.sigmas.numpy(), sig, rtol=2e-6)
    with pytest.raises(InputError, match="sigma_schedule='exponential' ignores the values"):
        dfa.to_diffusers(sig, diffusers.EDMEulerScheduler(sigma_schedule="exponential"))


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_unipc_with_flow_sigmas_takes_our_flow_times(shift):
    sched = diffusers.UniPCMultistepScheduler(use_flow_sigmas=True, prediction_type="flow_prediction", flow_shift=shift)
    sig = ef.schedule(vp_profile(0.01, 50.0), 10, "rescaled")
    sched.set_timesteps(**dfa.to_diffusers(sig, sched))
    np.testing.assert_allclose(sched.sigmas.numpy(), sig / (1 + sig), rtol=1e-5, atol=1e-7)


def test_schedulers_that_cannot_take_our_sigmas_say_why():
    sig = ef.schedule(vp_profile(0.03, 14.0), 10, "rescaled")
    with pytest.raises(InputError, match="use_flow_sigmas=True takes no custom flow sigmas"):
        dfa.to_diffusers(sig, diffusers.DPMSolverMultistepScheduler(use_flow_sigmas=True, prediction_type="flow_prediction"))
    with pytest.raises(InputError, match="use_karras_sigmas=True refuses custom timesteps"):
        dfa.to_diffusers(sig, diffusers.DPMSolverMultistepScheduler(use_karras_sigmas=True))
    with pytest.raises(InputError, match="UniPCMultistepScheduler.set_timesteps accepts neither"):
        dfa.to_diffusers(sig, diffusers.UniPCMultistepScheduler())


def test_heun_gets_fractional_timesteps_and_our_sigmas_exactly():
    sched = diffusers.HeunDiscreteScheduler(beta_schedule="scaled_linear")
    den = dfa.denoiser(GaussianVP(sched, 0.3, "epsilon"), sched)
    sig = ef.schedule(vp_profile(den.sigma_min, den.sigma_max), 10, "rescaled")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # exact: no sigma-error warning
        kw = dfa.to_diffusers(sig, sched)
    assert any(t != round(t) for t in kw["timesteps"])
    sched.set_timesteps(**kw)
    heun_sigmas = sched.sigmas.numpy()[::2][: len(sig) - 1]  # Heun repeats each inner sigma
    np.testing.assert_allclose(heun_sigmas, sig[:-1], rtol=1e-5)
    with pytest.warns(UserWarning, match=r"sigmas reach it to \d\.\d+% .* rounded to its integer"):
        dfa.to_diffusers(sig, diffusers.DPMSolverMultistepScheduler(beta_schedule="scaled_linear"))


def test_a_schedule_outside_the_schedulers_range_warns():
    sched = diffusers.EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")  # SD's
    sig = ef.schedule(vp_profile(0.002, 80.0), 10, "rescaled", interval="range")  # the whole profiled range
    with pytest.warns(UserWarning, match=r"leave EulerDiscreteScheduler's trained range \[0.0291\d, 14.61\]"):
        dfa.to_diffusers(sig, sched)


def test_manual_loop_recipe_runs_our_schedule_where_a_pipeline_would_override_it():
    """DDPMPipeline / DDIMPipeline call set_timesteps(n) themselves: the README's manual loop with an
    EulerDiscreteScheduler runs our sigmas, and equals our DDIM sampler on the exact Gaussian model."""
    sched = euler()
    unet = GaussianVP(sched, 0.3, "epsilon")
    den = dfa.denoiser(unet, sched)
    sig = ef.schedule(vp_profile(den.sigma_min, den.sigma_max), 8, "rescaled")
    noise = torch.randn(5, 1, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    sched.set_timesteps(**dfa.to_diffusers(sig, sched))  # the recipe
    x = noise * sched.init_noise_sigma
    for t in sched.timesteps:
        eps = unet(sched.scale_model_input(x, t), t.reshape(1).double()).sample
        x = sched.step(eps, t, x).prev_sample
    want = ef.samplers.ddim(ef.analytic.Gaussian(0.3, (1, 4, 4)), noise * sig[0], torch.tensor(sig))
    torch.testing.assert_close(x, want, rtol=1e-4, atol=1e-5)


def test_cli_formats_round_trip(tmp_path, capsys):
    """Every --format gives back the schedule: parsed, converted or executed."""
    from entropic_fast.cli import main
    grid = ef.sigma_grid(64, 0.03, 14.6)
    path = str(ef.Profile.from_curve(grid, 4 * grid**2 * 0.25 / (grid**2 + 0.25), 4).save(tmp_path / "p.npz"))
    want = ef.schedule(ef.Profile.load(path), 8, "rescaled")

    def run(fmt):
        assert main(["schedule", path, "--steps", "8", "--format", fmt]) == 0
        return capsys.readouterr().out
    np.testing.assert_array_equal(json.loads(run("diffusers"))["sigmas"], want)
    t = np.array(json.loads(run("flow"))["sigmas"])
    np.testing.assert_allclose(t / (1 - t), want, rtol=1e-12)
    np.testing.assert_array_equal([float(v) for v in run("comfyui").split(",")], want)
    ts = np.array(json.loads(run("timesteps"))["timesteps"])
    sd = diffusers.EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    den = dfa.denoiser(GaussianVP(sd, 0.3, "epsilon"), sd)
    np.testing.assert_allclose(den.timestep(torch.tensor(want[:-1])).numpy(), ts, atol=1e-3)  # diffusers: float32 alphas
    registered = []
    fake = types.ModuleType("modules.sd_schedulers")
    fake.Scheduler = lambda name, label, fn: types.SimpleNamespace(name=name, label=label, function=fn)
    fake.schedulers, fake.schedulers_map = registered, {}
    modules = types.ModuleType("modules")
    modules.sd_schedulers = fake
    import sys
    sys.modules.update({"modules": modules, "modules.sd_schedulers": fake})
    try:
        exec(run("a1111"), {})
    finally:
        del sys.modules["modules"], sys.modules["modules.sd_schedulers"]
    sch = fake.schedulers_map["entropic_rescaled"]
    np.testing.assert_allclose(sch.function(8, 0.03, 14.6, "cpu").numpy(), want.astype(np.float32))
    assert main(["schedule", path, "--steps", "8", "--format", "timesteps", "--sigma-max", "14.6"]) == 0
    far = ef.sigma_grid(16, 0.002, 80.0)
    far_path = str(ef.Profile.from_curve(far, far**2 / (1 + far**2), 1).save(tmp_path / "far.npz"))
    capsys.readouterr()
    assert main(["schedule", far_path, "--steps", "8", "--format", "timesteps", "--interval", "range"]) == 2
    assert "Stable Diffusion's schedule" in capsys.readouterr().err


def test_every_adapter_is_a_module_that_carries_dtype_device_and_settings(tmp_path):
    """EDM, guided and flow adapters: profile sees the net's dtype; settings enter the fingerprint, so a
    checkpoint of one guidance weight does not resume under another."""
    net = ToyEDM().to(torch.bfloat16)
    den = edm.denoiser(net)
    assert isinstance(den, torch.nn.Module) and den.dtype == torch.bfloat16 and den.device.type == "cpu"
    data, labels = torch.randn(40, 3), torch.arange(40) % 4
    prof = ef.profile(den, data, ef.sigma_grid(3), samples=8, labels=labels, progress=False)
    assert prof.meta["dtype"] == "bfloat16" and {c[0] for c in net.calls} == {torch.bfloat16}
    a, b = edm.guided(ToyEDM(), ToyEDM(), 2.0), edm.guided(ToyEDM(), ToyEDM(), 3.0)
    assert a.fingerprint() != b.fingerprint() and a.fingerprint() == edm.guided(ToyEDM(), ToyEDM(), 2.0).fingerprint()
    assert edm.denoiser(ToyEDM(), torch.bfloat16).fingerprint() != edm.denoiser(ToyEDM()).fingerprint()
    ck = tmp_path / "g.ckpt"
    ef.profile(a, data, ef.sigma_grid(3), samples=64, labels=labels, progress=False, checkpoint=ck, checkpoint_every=1)
    with pytest.raises(InputError, match="fingerprints"):
        ef.profile(b, data, ef.sigma_grid(3), samples=64, labels=labels, progress=False, checkpoint=ck)

    class Velocity(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 3).to(torch.bfloat16)
            self.times = []

        def forward(self, x, t):
            self.times.append((x.dtype, t.dtype, t.clone()))
            return self.lin(x)

    vel = Velocity()
    fden = flow.denoiser(vel, time_scale=1000.0)
    assert fden.dtype == torch.bfloat16
    out = fden(torch.randn(2, 3), torch.tensor([1.0, 3.0]))
    assert out.dtype == torch.float32 and vel.times[-1][:2] == (torch.bfloat16, torch.float32)
    torch.testing.assert_close(vel.times[-1][2], torch.tensor([500.0, 750.0]))


def test_labels_are_checked_once_before_the_loop():
    """Out-of-range classes are refused before any network call (the loop itself never checks them on the device)."""
    net = ToyEDM()
    with pytest.raises(InputError, match=r"class labels must be in \[0, 4\), got \[7\]"):
        ef.profile(edm.denoiser(net), torch.randn(20, 3), ef.sigma_grid(3), samples=4,
                   labels=torch.tensor([7] + [0] * 19), progress=False)
    assert net.calls == []
    with pytest.raises(InputError, match="fractional values"):
        ef.profile(edm.guided(ToyEDM(), ToyEDM(), 2.0), torch.randn(20, 3), ef.sigma_grid(3), samples=4,
                   labels=torch.full((20,), 1.5), progress=False)


@pytest.mark.parametrize("cls", ["DPMSolverMultistepScheduler", "DPMSolverSinglestepScheduler"])
def test_a_scheduler_that_ends_above_zero_says_so_with_its_last_sigma(cls):
    """``final_sigmas_type="sigma_min"``: diffusers ends at its training sigma_min (SD's 0.0292), not the schedule's 0."""
    sd = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    sig = ef.schedule(vp_profile(0.0292, 14.6), 8, "rescaled", interval="range")
    with pytest.warns(UserWarning, match=rf"{cls} ends sampling at sigma 0.029\d+, not 0 .*final_sigmas_type='zero'"):
        kw = dfa.to_diffusers(sig, getattr(diffusers, cls)(final_sigmas_type="sigma_min", **sd))
    zero = getattr(diffusers, cls)(final_sigmas_type="zero", **sd)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert dfa.to_diffusers(sig, zero) == kw
    assert not [w for w in seen if "ends sampling" in str(w.message)]
    zero.set_timesteps(**kw)
    assert float(zero.sigmas[-1]) == 0.0


def test_profiling_a_vp_model_beyond_its_schedulers_range_warns():
    """Issue 41: beyond the scheduler's range the timestep clamps and the profile measures the clamped model."""
    sched = diffusers.EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    den = dfa.denoiser(GaussianVP(sched, 0.3, "epsilon"), sched)
    data = torch.randn(64, 1, 4, 4) * 0.3**0.5
    with pytest.warns(UserWarning, match=r"spans sigma 0.002 .. 80, but diffusers VP adapter.* is defined on "
                                         r"\[0.0291\d, 14.61\]: outside it") as seen:
        ef.profile(den, data, ef.sigma_grid(4, 0.002, 80.0), samples=32, progress=False, control=None)
    assert seen[0].filename == __file__  # it points at the caller's line
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ef.profile(den, data, ef.sigma_grid(4, den.sigma_min, den.sigma_max), samples=32, progress=False,
                   control=None)
