"""Every scheduler class diffusers exports, given our sigmas through ``adapters.diffusers.to_diffusers``: each one is
exact (its own sigmas afterwards are ours: EDM form, or flow times for flow schedulers), or takes the nearest
timesteps with a warning that gives the sigma error it reaches, or is refused by our InputError naming what to use
instead. Nothing else may happen: no diffusers error of its own, no silent change of convention."""
import inspect
import re
import warnings

import diffusers
import numpy as np
import pytest
import torch

import entropic_fast as ef
from entropic_fast.adapters import diffusers as dfa
from entropic_fast.errors import InputError

REQUIRED = {  # constructor arguments of the classes that have no defaults (any valid values)
    "AmusedScheduler": dict(mask_token_id=1),
    "VQDiffusionScheduler": dict(num_vec_classes=8),
    "RFD4ProteinaScheduler": dict(schedule_mode="log", noise_mode="tan", tsr_k=1.0, tsr_sigma=1.0),
}
SIGMAS = ef.grids.karras(8, 0.03, 14.6)
FLOW = SIGMAS / (1 + SIGMAS)


def scheduler_names():
    names = []
    for n in dir(diffusers):
        if "Scheduler" not in n:
            continue
        try:
            cls = getattr(diffusers, n)
        except Exception:  # noqa: BLE001 (an optional dependency missing: not a class this install exports)
            continue
        if inspect.isclass(cls) and callable(getattr(cls, "set_timesteps", None)):
            names.append(n)
    return sorted(names)


NAMES = scheduler_names()


def test_the_walk_covers_the_schedulers_users_meet():
    assert len(NAMES) >= 40 and {"EulerDiscreteScheduler", "FlowMatchEulerDiscreteScheduler", "DDIMScheduler",
                                 "LTXEulerAncestralRFScheduler", "MiniMaxH3Scheduler"} <= set(NAMES)


def vp_sigmas(sched, timesteps):
    a = torch.as_tensor(sched.alphas_cumprod, dtype=torch.float64)
    table = ((1 - a) / a).sqrt().numpy()
    return np.interp(np.asarray(timesteps, np.float64), np.arange(len(table)), table)


def check_timesteps_path(sched, kw, caught):
    """Nearest (or fractional) timesteps: the warning's error is the error the scheduler's sigmas reach."""
    sched.set_timesteps(**kw)
    got = vp_sigmas(sched, kw["timesteps"])
    err = float(np.max(np.abs(got / SIGMAS[:-1] - 1)))
    said = [m for m in caught if "takes timesteps only" in m]
    if err > 1e-5:
        assert said, f"{type(sched).__name__}: error {err:.2%} without a warning"
        pct = float(re.search(r"to (\d+\.\d+)%", said[0]).group(1))
        assert pct == pytest.approx(100 * err, abs=0.006)


@pytest.mark.parametrize("name", NAMES)
def test_every_scheduler_is_exact_warned_or_refused(name):
    sched = getattr(diffusers, name)(**REQUIRED.get(name, {}))
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        try:
            kw = dfa.to_diffusers(SIGMAS, sched)
        except InputError as e:
            assert re.search(r"\buse\b", str(e)), str(e)  # refused, naming what to use instead
            return
    caught = [str(x.message) for x in w if issubclass(x.category, UserWarning)]
    if "timesteps" in kw:
        return check_timesteps_path(sched, kw, caught)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sched.set_timesteps(**kw)
    got = np.asarray(torch.as_tensor(sched.sigmas, dtype=torch.float64))
    want = FLOW if got.max() <= 1.0 else SIGMAS
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("name", ["LTXEulerAncestralRFScheduler", "MiniMaxH3Scheduler", "FlowMapEulerDiscreteScheduler"])
def test_rectified_flow_schedulers_get_flow_times_with_one_terminal_zero(name):
    """These took our EDM sigmas [14.6, 7.9, ...] as their own flow times without a word (FlowMap with a
    second trailing 0)."""
    sched = getattr(diffusers, name)()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sched.set_timesteps(**dfa.to_diffusers(SIGMAS, sched))
    got = np.asarray(torch.as_tensor(sched.sigmas, dtype=torch.float64))
    assert got.max() < 1 and np.count_nonzero(got == 0) == 1
    np.testing.assert_allclose(got, FLOW, rtol=2e-6)


def test_continuous_v_prediction_feeds_the_unet_what_the_scheduler_feeds():
    """EulerDiscreteScheduler(timestep_type="continuous", prediction_type="v_prediction") feeds the UNet
    0.25 log sigma; the adapter fed it the training timestep (258.09 at sigma 1 where the scheduler feeds 0.0)."""
    sched = diffusers.EulerDiscreteScheduler(timestep_type="continuous", prediction_type="v_prediction")
    seen = []

    class Recorder(torch.nn.Module):
        def forward(self, x, t, **kwargs):
            seen.append(t.clone())
            return torch.zeros_like(x)

    den = dfa.denoiser(Recorder(), sched)
    sig = torch.tensor(SIGMAS[:-1], dtype=torch.float32)
    den(torch.zeros(len(sig), 1, 2, 2), sig)
    sched.set_timesteps(**dfa.to_diffusers(SIGMAS, sched))
    torch.testing.assert_close(seen[0].float(), sched.timesteps.float(), rtol=1e-6, atol=1e-6)
    assert float(den.timestep(torch.tensor([1.0]))) == 0.0
