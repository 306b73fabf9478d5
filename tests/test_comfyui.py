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
    assert set(NODE_CLASS_MAPPINGS) == set(NODE_DISPLAY_NAME_MAPPINGS) == {"EntropicScheduler"}
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
