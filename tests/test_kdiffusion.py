"""Against the real k-diffusion 0.1.1 (a test extra, installed by the Makefile with --no-deps).

k-diffusion's package ``__init__`` imports everything it has (torchvision, CLIP, clean-fid, ...), and the
registry's torchvision wheels need a CUDA torch: so its ``sampling`` and ``external`` modules are loaded
under a bare package, with ``utils.append_dims`` (the one helper they use) given here."""
import importlib
import importlib.util
import sys
import types

import numpy as np
import pytest
import torch

import entropic_fast as ef
from entropic_fast.adapters import kdiffusion as kda


@pytest.fixture(scope="module")
def K():
    spec = importlib.util.find_spec("k_diffusion")
    if spec is None:
        pytest.fail("k-diffusion is a test extra: run `make setup` (it installs k-diffusion with --no-deps)")
    saved = {k: v for k, v in sys.modules.items() if k == "k_diffusion" or k.startswith("k_diffusion.")}
    pkg = types.ModuleType("k_diffusion")
    pkg.__path__ = list(spec.submodule_search_locations)
    utils = types.ModuleType("k_diffusion.utils")
    utils.append_dims = lambda x, n: x[(...,) + (None,) * (n - x.ndim)]
    sys.modules.update({"k_diffusion": pkg, "k_diffusion.utils": utils})
    try:
        yield types.SimpleNamespace(sampling=importlib.import_module("k_diffusion.sampling"),
                                    external=importlib.import_module("k_diffusion.external"))
    finally:
        for k in [k for k in sys.modules if k == "k_diffusion" or k.startswith("k_diffusion.")]:
            del sys.modules[k]
        sys.modules.update(saved)


GAUSS = ef.analytic.Gaussian(torch.linspace(0.1, 3.0, 12))
ALPHAS = torch.cumprod(1 - torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2, 0)


class EpsNet(torch.nn.Module):
    """An eps-prediction network ``net(x * c_in, t, cond=...)`` (keyword conditioning, as k-diffusion's
    wrappers call it) whose denoiser is the exact Gaussian one plus ``cond`` per row."""

    def __init__(self):
        super().__init__()
        self.wrapper = None

    def forward(self, x_in, t, cond=None):
        s = self.wrapper.t_to_sigma(t).view(-1, 1)
        x = x_in * (s**2 + 1).sqrt()
        d = GAUSS(x, s.view(-1)) + (0 if cond is None else cond.view(-1, 1).to(x.dtype))
        return (x - d) / s


def test_kdiffusion_wrapper_profiles_with_keyword_conditioning(K):
    net = EpsNet()
    net.wrapper = wrapper = K.external.DiscreteEpsDDPMDenoiser(net, ALPHAS.float(), quantize=False)
    grid = ef.sigma_grid(16, float(wrapper.sigma_min), float(wrapper.sigma_max))  # float32 model limits
    data, labels = GAUSS.sample(64, torch.Generator().manual_seed(0)).float(), torch.arange(64) % 3 * 0.5
    got = ef.profile(wrapper, data, grid, samples=48, labels=labels, labels_kwarg="cond", progress=False)
    want = ef.profile(lambda x, s, y: GAUSS(x, s) + y.view(-1, 1).to(x.dtype), data, grid, samples=48,
                      labels=labels, progress=False)
    np.testing.assert_allclose(got.mse, want.mse, rtol=1e-3)
    bare = ef.profile(wrapper, data, grid, samples=48, progress=False)
    np.testing.assert_allclose(bare.mse, ef.profile(GAUSS, data, grid, samples=48, progress=False).mse, rtol=1e-3)
    assert np.all(got.mse > bare.mse)  # the labels reached the network
    # its float32 limits are accepted as the profiled range
    s = kda.get_sigmas_entropic(8, bare, sigma_min=wrapper.sigma_min, sigma_max=wrapper.sigma_max)
    assert s.shape == (9,) and float(s[-1]) == 0


@pytest.mark.parametrize("name,ours", [("sample_euler", "ddim"), ("sample_heun", "heun"),
                                       ("sample_dpmpp_2m", "dpmpp_2m")])
def test_kdiffusion_samplers_take_our_sigmas(K, name, ours):
    grid = ef.sigma_grid(64, 0.01, 40.0)
    prof = ef.Profile.from_curve(grid, GAUSS.mse(grid), GAUSS.dim)
    sigmas = kda.get_sigmas_entropic(10, prof, "rescaled").double()
    x = torch.randn(5, 12, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * sigmas[0]
    got = getattr(K.sampling, name)(GAUSS, x, sigmas, disable=True)
    want = getattr(ef.samplers, ours)(GAUSS, x, sigmas)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
