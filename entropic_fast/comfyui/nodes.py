"""The node classes; importing them needs no ComfyUI (a MODEL is read through duck typing, and
ComfyUI's own modules are imported only where a node runs inside it)."""
import importlib
import os

import torch

from ..adapters.comfyui import ComfyDenoiser, grid_for, is_flow, model_sampling
from ..errors import InputError
from ..profile import Profile
from ..schedules import KINDS, schedule


def _comfy(name):
    """A ComfyUI module when running inside ComfyUI, else None."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _output_path(path):
    """Where a relative profile path lives: ComfyUI's output folder inside ComfyUI, else as given."""
    folders = _comfy("folder_paths")
    if os.path.isabs(path) or folders is None:
        return path
    return os.path.join(folders.get_output_directory(), path)


def _input_path(path):
    """A profile to read: the path as given if it exists, else under ComfyUI's output folder."""
    return path if os.path.exists(path) else _output_path(path)


def entropic_sigmas(prof, steps, kind="rescaled", denoise=1.0, flow=False):
    """What ``EntropicScheduler`` returns: ``steps`` sigmas (+ 0) of the schedule, the last ``steps`` of a
    longer one when ``denoise < 1`` (as ComfyUI's BasicScheduler does), as flow times for flow models."""
    if denoise <= 0.0:
        return torch.zeros(0)
    total = steps if denoise >= 1.0 else int(steps / denoise)
    s = torch.tensor(schedule(prof, total, kind), dtype=torch.float32)[-(steps + 1):]
    return s / (1 + s) if flow else s


def profile_latents(model, latent, path, *, samples=256, points=128, seed=0, conditioning=None,
                    sigma_min=0.0, sigma_max=0.0, batch_size=64):
    """What ``EntropicProfile`` does: profile a MODEL on a LATENT batch (ComfyUI's ``process_latent_in``
    applied, as its samplers do) over the model's sigma range (or ``sigma_min``/``sigma_max`` where > 0),
    checkpointed beside ``path`` (a cancelled run resumes), with ComfyUI's progress bar; saves and
    returns the Profile."""
    from ..estimate import profile

    samples_ = latent.get("samples") if isinstance(latent, dict) else None
    if not torch.is_tensor(samples_) or samples_.ndim < 3:
        raise InputError("latent must be a ComfyUI LATENT (a dict with a 'samples' tensor), got "
                         f"{type(latent).__name__}")
    den = ComfyDenoiser(model, conditioning)
    grid = grid_for(model, points, sigma_min or None, sigma_max or None)
    latent_in = getattr(den.net, "process_latent_in", None)
    data = latent_in(samples_) if callable(latent_in) else samples_
    management, utils = _comfy("comfy.model_management"), _comfy("comfy.utils")
    device = None
    if management is not None:
        management.load_models_gpu([model])
        device = model.load_device
    bar = utils.ProgressBar(grid.size * samples) if utils is not None else True
    checkpoint = f"{path}.ckpt"
    prof = profile(den, data.float(), grid, samples=samples, seed=seed, batch_size=batch_size, device=device,
                   progress=bar, checkpoint=checkpoint)
    prof.save(path)
    if os.path.exists(checkpoint):
        os.remove(checkpoint)
    return prof


class EntropicScheduler:
    """Sigmas of an entropic_fast profile (entropic, rescaled, spectral, ... time), for SamplerCustom."""
    CATEGORY = "sampling/custom_sampling/schedulers"
    RETURN_TYPES = ("SIGMAS",)
    FUNCTION = "get_sigmas"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL",),
            "profile": ("STRING", {"default": "entropic_profile.npz",
                                   "tooltip": "a profile saved by entropic_fast or EntropicProfile"}),
            "steps": ("INT", {"default": 20, "min": 2, "max": 10000}),
            "kind": (list(KINDS), {"default": "rescaled"}),
            "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}),
        }}

    def get_sigmas(self, model, profile, steps, kind, denoise):
        prof = Profile.load(_input_path(profile))
        return (entropic_sigmas(prof, steps, kind, denoise, is_flow(model_sampling(model))),)


class EntropicProfile:
    """Measure a MODEL's denoising error on a LATENT batch: the profile file EntropicScheduler reads."""
    CATEGORY = "sampling/custom_sampling/schedulers"
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("profile",)
    FUNCTION = "run"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL",),
            "latent": ("LATENT", {"tooltip": "encoded training-like images (VAE Encode); drawn with replacement"}),
            "filename": ("STRING", {"default": "entropic_profile.npz",
                                    "tooltip": "relative paths go to ComfyUI's output folder"}),
            "samples": ("INT", {"default": 256, "min": 1, "max": 65536,
                                "tooltip": "Monte-Carlo samples per sigma (the paper: 1024)"}),
            "points": ("INT", {"default": 128, "min": 8, "max": 1024, "tooltip": "sigmas in the grid"}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 2**63 - 1}),
        }, "optional": {
            "positive": ("CONDITIONING",),
            "sigma_min": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1e4, "step": 0.001,
                                    "tooltip": "0: the model's own"}),
            "sigma_max": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1e4, "step": 0.01,
                                    "tooltip": "0: the model's own (flow models: t = 0.995)"}),
            "batch_size": ("INT", {"default": 64, "min": 1, "max": 4096}),
        }}

    def run(self, model, latent, filename, samples, points, seed, positive=None, sigma_min=0.0, sigma_max=0.0,
            batch_size=64):
        path = _output_path(filename)
        profile_latents(model, latent, path, samples=samples, points=points, seed=seed, conditioning=positive,
                        sigma_min=sigma_min, sigma_max=sigma_max, batch_size=batch_size)
        return (path,)


NODE_CLASS_MAPPINGS = {"EntropicScheduler": EntropicScheduler, "EntropicProfile": EntropicProfile}
NODE_DISPLAY_NAME_MAPPINGS = {"EntropicScheduler": "Entropic Scheduler (entropic_fast)",
                              "EntropicProfile": "Entropic Profile (entropic_fast)"}
