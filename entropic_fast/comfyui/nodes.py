"""The node classes; importing them needs no ComfyUI (a MODEL is read through duck typing, and
ComfyUI's own modules are imported only where a node runs inside it).

Imports are absolute: ComfyUI loads a node folder's ``__init__.py`` as a top-level module named after its
path, so relative imports above the folder cannot resolve there."""
import importlib
import logging
import os

import torch

from entropic_fast import checks
from entropic_fast.adapters.clients import KINDS, guarded, sigmas
from entropic_fast.adapters.comfyui import ComfyDenoiser, grid_for, is_flow, model_record, model_sampling
from entropic_fast.errors import InputError
from entropic_fast.files import check_writable
from entropic_fast.profile import Profile
from entropic_fast.schedules import MAX_STEPS

NODE_KINDS = KINDS  # no spectra recorded; the peers are ComfyUI's own schedulers (or its AYS node)
KSAMPLER_NAME = "entropic"  # the entry in KSampler's scheduler list: rescaled entropic time
NODE_SAMPLERS = ("euler", "euler_ancestral", "heun", "dpmpp_2m", "ddim")  # ComfyUI's names the interval rule knows


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


def _span(lo, hi):
    return f"sigma {lo:.4g} .. {hi:.4g}"


def _near(a, b, rtol=0.02):
    return abs(a - b) <= rtol * max(abs(a), abs(b))


def check_fits(prof, model, where="the profile"):
    """Refuse a profile measured on another kind of model: by the model record EntropicProfile writes (sampling
    class, prediction and range), else by the grid's ends against the model's range (EDM convention, 2%)."""
    have = model_record(model)
    if have is None:
        return
    rec = prof.meta.get("comfyui")
    if rec and not (isinstance(rec, dict) and all(isinstance(rec.get(k), (int, float)) and not isinstance(
            rec.get(k), bool) for k in ("sigma_min", "sigma_max"))):
        raise InputError(f"{where} has a damaged model record (meta['comfyui'] = {str(rec)[:80]!r}): run "
                         "EntropicProfile on this model again")
    if rec:
        same = (rec.get("sampling"), rec.get("prediction")) == (have["sampling"], have["prediction"])
        if not (same and _near(rec["sigma_min"], have["sigma_min"]) and _near(rec["sigma_max"], have["sigma_max"])):
            raise InputError(f"{where} was measured on a {rec.get('sampling')} ({rec.get('prediction')}) model, "
                             f"{_span(rec['sigma_min'], rec['sigma_max'])}; this model is {have['sampling']} "
                             f"({have['prediction']}), {_span(have['sigma_min'], have['sigma_max'])}: run "
                             "EntropicProfile on this model")
        return
    lo, hi = float(prof.sigmas[0]), float(prof.sigmas[-1])
    if not (_near(lo, have["sigma_min"]) and _near(hi, have["sigma_max"])):
        raise InputError(f"{where} covers {_span(lo, hi)}, this model {_span(have['sigma_min'], have['sigma_max'])} "
                         "(EDM convention): it was measured on another model; run EntropicProfile on this one")


def entropic_sigmas(prof, steps, kind="rescaled", denoise=1.0, flow=False, sampler="euler"):
    """What ``EntropicScheduler`` returns: ``steps`` sigmas (+ 0) of the schedule for ``sampler`` (its interval
    chosen from the profile within the model's range), the last ``steps`` of a longer one when ``denoise < 1`` (as
    ComfyUI's BasicScheduler does), as flow times for flow models."""
    steps = checks.integer(steps, "steps", 1)
    denoise = checks.real(denoise, "denoise")
    if denoise <= 0.0:
        return torch.zeros(0)
    total = steps if denoise >= 1.0 else min(int(steps / denoise), max(steps, MAX_STEPS))  # ComfyUI asks steps /
    # denoise; past MAX_STEPS the tail is the same few small sigmas, as from an endless schedule
    return sigmas(prof, total, kind, flow=flow, sampler=sampler)[-(steps + 1):]


def profile_latents(model, latent, path, *, samples=256, points=128, seed=0, conditioning=None,
                    sigma_min=0.0, sigma_max=0.0, batch_size=64):
    """What ``EntropicProfile`` does: profile a MODEL on a LATENT batch (ComfyUI's ``process_latent_in``
    applied, as its samplers do) over the model's sigma range (or ``sigma_min``/``sigma_max`` where > 0),
    checkpointed beside ``path`` (a cancelled run resumes), with ComfyUI's progress bar; saves and
    returns the Profile."""
    from entropic_fast.profiling import profile

    samples_ = latent.get("samples") if isinstance(latent, dict) else None
    if not torch.is_tensor(samples_) or samples_.ndim < 3:
        raise InputError("latent must be a ComfyUI LATENT (a dict with a 'samples' tensor), got "
                         f"{type(latent).__name__}")
    check_writable(path, "the profile file")  # before the run, not after it
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
    prof = prof.with_meta(comfyui=model_record(model))  # what EntropicScheduler and the KSampler entry check against
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
            "kind": (list(NODE_KINDS), {"default": "rescaled",
                                        "tooltip": "spectral needs a spectral profile (ef.profile(spectral=True))"}),
            "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}),
        }, "optional": {
            "sampler": (list(NODE_SAMPLERS), {"default": "euler", "tooltip": "the sampler you run the sigmas with: "
                                              "it sets where they start and stop (heun: as euler), and which tuned "
                                              "schedule of the profile applies"}),
        }}

    def get_sigmas(self, model, profile, steps, kind, denoise, sampler="euler"):
        if model_sampling(model) is None:
            raise InputError(f"model must be a ComfyUI MODEL, got {type(model).__name__}")
        prof = Profile.load(_input_path(profile))
        check_fits(prof, model, f"profile {profile!r}")
        return (entropic_sigmas(prof, steps, kind, denoise, is_flow(model_sampling(model)), sampler),)


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
            "positive": ("CONDITIONING", {"tooltip": "the prompt the error is measured under (CLIP Text Encode; an "
                                                     "empty prompt will do): SD and SDXL models need one"}),
        }, "optional": {
            "sigma_min": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1e4, "step": 0.001,
                                    "tooltip": "0: the model's own"}),
            "sigma_max": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1e4, "step": 0.01,
                                    "tooltip": "0: the model's own (flow models: t = 0.995)"}),
            "batch_size": ("INT", {"default": 64, "min": 1, "max": 4096}),
        }}

    def run(self, model, latent, filename, samples, points, seed, positive=None, sigma_min=0.0, sigma_max=0.0,
            batch_size=64):  # positive has a default for callers from Python; the node requires it
        path = _output_path(filename)
        profile_latents(model, latent, path, samples=samples, points=points, seed=seed, conditioning=positive,
                        sigma_min=sigma_min, sigma_max=sigma_max, batch_size=batch_size)
        return (path,)


NODE_CLASS_MAPPINGS = {"EntropicScheduler": EntropicScheduler, "EntropicProfile": EntropicProfile}
NODE_DISPLAY_NAME_MAPPINGS = {"EntropicScheduler": "Entropic Scheduler (entropic_fast)",
                              "EntropicProfile": "Entropic Profile (entropic_fast)"}


# ---- an entry in KSampler's scheduler list (comfy.samplers.SCHEDULER_HANDLERS, ComfyUI 0.3.x and later)

def _newest_fitting_profile(model_sampling_obj):
    """The newest profile in ComfyUI's output folder recorded on a model of this sampling type and range."""
    folders = _comfy("folder_paths")
    if folders is None:
        return None, "ComfyUI's output folder is unknown"
    out, have = folders.get_output_directory(), model_record(model_sampling_obj)
    if have is None:
        return None, "the model has no sigma range to match a profile by"
    try:
        names = [f for f in os.listdir(out) if f.endswith(".npz")]
    except OSError as e:
        return None, f"cannot list ComfyUI's output folder {out} ({e})"
    for name in sorted(names, key=lambda f: -_mtime(os.path.join(out, f))):
        try:
            prof = Profile.load(os.path.join(out, name))
            check_fits(prof, model_sampling_obj, f"profile {name!r}")
        except (InputError, OSError, ValueError) as e:
            logging.info("entropic scheduler: skipping %s (%s)", name, e)
            continue
        if prof.meta.get("comfyui"):
            return prof, name
    return None, f"no profile of a {have['sampling']} ({have['prediction']}) model in {out}"


def _mtime(path):
    """A file's modification time; 0 for one that cannot be read (a dangling link): sorted last."""
    try:
        return os.path.getmtime(path)
    except OSError:
        return 0.0


def ksampler_sigmas(model_sampling_obj, steps):
    """KSampler's ``entropic`` scheduler: rescaled entropic time from the newest fitting EntropicProfile output;
    without one, ComfyUI's ``normal`` schedule and a warning (never an error in the middle of a generation)."""
    def build():
        prof, why = _newest_fitting_profile(model_sampling_obj)
        if prof is None:
            raise InputError(f"{why}; run EntropicProfile on this model first")
        try:
            return entropic_sigmas(prof, steps, "rescaled", 1.0, is_flow(model_sampling_obj))
        except InputError as e:  # e.g. one step: no schedule of ours
            raise InputError(f"{why}: {e}") from e
    return guarded(build, lambda: _comfy("comfy.samplers").normal_scheduler(model_sampling_obj, steps),
                   lambda e: f"entropic scheduler: {e}. Using 'normal' for now.")


def register_ksampler_scheduler():
    """Add ``entropic`` to KSampler's scheduler list where ComfyUI lets packs add one (its SCHEDULER_HANDLERS
    table); True when added now, False inside ComfyUI versions without the table, outside ComfyUI, or if present."""
    samplers = _comfy("comfy.samplers")
    handlers = getattr(samplers, "SCHEDULER_HANDLERS", None)
    if handlers is None or KSAMPLER_NAME in handlers:
        return False
    handlers[KSAMPLER_NAME] = samplers.SchedulerHandler(ksampler_sigmas, use_ms=True)
    for names in (samplers.SCHEDULER_NAMES, samplers.KSampler.SCHEDULERS):  # KSampler's list is SCHEDULER_NAMES
        if KSAMPLER_NAME not in names:
            names.append(KSAMPLER_NAME)
    return True
