"""The client helper every integration shares (issue 40: one place for the range, the flow convention, the kinds
and the never-raise fallback); each client's own tests (ComfyUI, webui, k-diffusion) run it through the client."""
import logging

import numpy as np
import pytest
import torch

import entropic_fast as ef
from entropic_fast.adapters import clients, kdiffusion
from entropic_fast.comfyui import nodes


@pytest.fixture(scope="module")
def prof():
    grid = ef.sigma_grid(32, 0.01, 50.0)
    return ef.Profile.from_curve(grid, ef.analytic.Gaussian(torch.full((16,), 0.25)).mse(grid), dim=16)


def test_sigmas_are_the_schedule_in_the_clients_convention(prof):
    want = ef.schedule(prof, 8, "rescaled", 0.05, 20.0)
    s = clients.sigmas(prof, 8, "rescaled", lo=0.05, hi=20.0)
    assert s.dtype == torch.float32 and np.allclose(s.numpy(), want, rtol=1e-6)
    t = clients.sigmas(prof, 8, "rescaled", lo=0.05, hi=20.0, flow=True)
    assert np.allclose(t.numpy(), want / (1 + want), rtol=1e-6) and t[-1] == 0  # flow times, ending in 0


def test_a_flow_request_is_read_as_sigmas_and_clipped(prof):
    lo, hi = clients.request(0.1, 0.5, flow=True)  # t = s / (1 + s)
    assert lo == pytest.approx(0.1 / 0.9) and hi == pytest.approx(1.0)
    assert clients.request(0.0, 1.0, flow=True) == (None, None)  # the ends of flow time: the profile's
    with pytest.warns(UserWarning, match="the profile covers 0.01 .. 50"):
        assert clients.clip_to_profile(prof, 0.001, 80.0) == (pytest.approx(0.01), pytest.approx(50.0))


def test_guarded_falls_back_with_a_warning_and_a_log_line(caplog):
    def build():
        raise ValueError("no schedule")
    with caplog.at_level(logging.WARNING), pytest.warns(UserWarning, match="said: no schedule"):
        assert clients.guarded(build, lambda: "fallback", lambda e: f"said: {e}") == "fallback"
    assert "said: no schedule" in caplog.text
    assert clients.guarded(lambda: "built", lambda: pytest.fail("no fallback"), str) == "built"


def test_every_client_takes_its_kinds_and_its_sigmas_from_the_helper(prof):
    assert nodes.NODE_KINDS == clients.KINDS == ef.kinds.CLIENT_KINDS
    comfy = nodes.entropic_sigmas(prof, 8, "rescaled", flow=True, sampler="euler")
    assert torch.equal(comfy, clients.sigmas(prof, 8, "rescaled", flow=True, sampler="euler"))
    a1111 = kdiffusion.scheduler(prof, "rescaled")(8, 0.05, 20.0)
    assert torch.equal(a1111, clients.sigmas(prof, 8, "rescaled", lo=0.05, hi=20.0))
    assert kdiffusion.fallback is clients.karras
