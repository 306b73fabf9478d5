"""The node classes; importing them needs no ComfyUI (a MODEL is read through duck typing)."""
import torch

from ..profile import Profile
from ..schedules import KINDS, schedule


def _model_sampling(model):
    """ComfyUI's model sampling object of a MODEL (ModelPatcher), or None."""
    get = getattr(model, "get_model_object", None)
    return get("model_sampling") if callable(get) else None


def _is_flow(sampling):
    """ComfyUI marks flow-matching models by the CONST mixin of their model sampling."""
    return sampling is not None and any(c.__name__ == "CONST" for c in type(sampling).__mro__)


def entropic_sigmas(prof, steps, kind="rescaled", denoise=1.0, flow=False):
    """What ``EntropicScheduler`` returns: ``steps`` sigmas (+ 0) of the schedule, the last ``steps`` of a
    longer one when ``denoise < 1`` (as ComfyUI's BasicScheduler does), as flow times for flow models."""
    if denoise <= 0.0:
        return torch.zeros(0)
    total = steps if denoise >= 1.0 else int(steps / denoise)
    s = torch.tensor(schedule(prof, total, kind), dtype=torch.float32)[-(steps + 1):]
    return s / (1 + s) if flow else s


class EntropicScheduler:
    """Sigmas of an entropic_fast profile (entropic, rescaled, spectral, ... time), for SamplerCustom."""
    CATEGORY = "sampling/custom_sampling/schedulers"
    RETURN_TYPES = ("SIGMAS",)
    FUNCTION = "get_sigmas"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL",),
            "profile": ("STRING", {"default": "profile.npz", "tooltip": "a profile saved by entropic_fast"}),
            "steps": ("INT", {"default": 20, "min": 2, "max": 10000}),
            "kind": (list(KINDS), {"default": "rescaled"}),
            "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}),
        }}

    def get_sigmas(self, model, profile, steps, kind, denoise):
        return (entropic_sigmas(Profile.load(profile), steps, kind, denoise, _is_flow(_model_sampling(model))),)


NODE_CLASS_MAPPINGS = {"EntropicScheduler": EntropicScheduler}
NODE_DISPLAY_NAME_MAPPINGS = {"EntropicScheduler": "Entropic Scheduler (entropic_fast)"}
