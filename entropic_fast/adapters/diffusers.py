"""diffusers VP models as EDM denoisers, and our sigmas as the keyword arguments a diffusers scheduler takes."""
from typing import Any, Callable, Optional, Tuple  # noqa: F401
import copy
import inspect
import warnings

import numpy as np
import torch

from ..errors import InputError
from .base import Adapter
from .flow import sigma_to_t


def vp_log_sigmas(scheduler):
    """``log sqrt((1 - a) / a)`` of the scheduler's ``alphas_cumprod``, one per training timestep (ascending)."""
    a = getattr(scheduler, "alphas_cumprod", None)
    if a is None:
        raise InputError(f"{type(scheduler).__name__} has no alphas_cumprod: not a VP scheduler")
    a = torch.as_tensor(a, dtype=torch.float64)
    bad = ~((a > 0) & (a < 1))
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        raise InputError(f"{type(scheduler).__name__}.alphas_cumprod must lie strictly between 0 and 1, got "
                         f"{float(a[i])!r} at timestep {i} (sigma would be {'inf' if a[i] <= 0 else 0})")
    return torch.log(((1 - a) / a).sqrt())


def continuous_timesteps(sigma, log_sigmas):
    """Continuous timestep of each sigma on a VP schedule (``log_sigmas`` ascending, one per training
    timestep): linear interpolation of the index in log sigma, clamped to the schedule's range."""
    ls = torch.as_tensor(log_sigmas, dtype=torch.float64).to(sigma.device)
    u = sigma.to(torch.float64).clamp_min(1e-30).log().clamp(ls[0], ls[-1])
    hi = torch.searchsorted(ls, u).clamp(1, len(ls) - 1)
    lo = hi - 1
    frac = (u - ls[lo]) / (ls[hi] - ls[lo])
    return lo.to(torch.float64) + frac


def training_errors(scheduler: Any, timesteps: torch.Tensor, model_output: torch.Tensor, noisy: torch.Tensor,
                    clean: torch.Tensor, prediction_type: Optional[str] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(sigma, errors)`` of a diffusers training step, for ``ef.Recorder.add(sigma, errors=errors)``: each sample's
    EDM sigma ``sqrt((1 - a_t) / a_t)`` and its squared error ``||x0_hat - x0||^2``, with ``x0_hat`` what the model's
    output (``epsilon``, ``v_prediction`` or ``sample``, by default the scheduler's) says of the clean sample, as
    ``DDPMScheduler.step`` computes its ``pred_original_sample``. The error in ``x0`` is the EDM error at that sigma.

    Parameters
    ----------
    scheduler : diffusers scheduler
        The training scheduler (its ``alphas_cumprod`` and ``config.prediction_type``).
    timesteps : torch.Tensor
        The step's integer timesteps, one per sample.
    model_output, noisy, clean : torch.Tensor
        The model's output, its noisy input and the clean samples of the step.
    prediction_type : str, optional
        ``epsilon``, ``v_prediction`` or ``sample`` (default the scheduler's).

    Returns
    -------
    tuple of torch.Tensor
        ``(sigma, errors)``, each of shape ``(batch,)``, float64."""
    kind = prediction_type or getattr(getattr(scheduler, "config", None), "prediction_type", "epsilon")
    table = torch.as_tensor(scheduler.alphas_cumprod, dtype=torch.float64)
    t = torch.as_tensor(timesteps)
    if t.is_complex() or t.dtype == torch.bool or not bool((t == t.round()).all()) or bool((t < 0).any()) \
            or bool((t >= table.numel()).any()):
        raise InputError(f"timesteps must be whole numbers in [0, {table.numel() - 1}] (the scheduler's table), got "
                         f"{t.flatten()[:6].tolist()}")
    a = table.to(noisy.device)[t.long().to(noisy.device)]
    shape = (-1,) + (1,) * (noisy.ndim - 1)
    sa, sb = a.sqrt().view(shape), (1 - a).sqrt().view(shape)
    x, out = noisy.detach().to(torch.float64), model_output.detach().to(torch.float64)
    if kind == "epsilon":
        x0_hat = (x - sb * out) / sa
    elif kind == "v_prediction":
        x0_hat = sa * x - sb * out
    elif kind == "sample":
        x0_hat = out
    else:
        raise InputError(f"prediction_type must be epsilon, v_prediction or sample, got {kind!r}")
    err = (x0_hat - clean.detach().to(torch.float64)).square().flatten(1).sum(1)
    return ((1 - a) / a).sqrt(), err


class VPDenoiser(Adapter):
    """A diffusers ``UNet2DModel`` / ``UNet2DConditionModel`` with a VP ``alphas_cumprod`` as an EDM denoiser:
    ``s = sqrt((1 - a) / a)``, input ``x / sqrt(1 + s^2)``, timestep by log-sigma interpolation.

    A module: it carries the network's ``dtype`` and ``device`` (which ``profile`` reads), feeds the
    network its own dtype, keeps the timestep in float32 (a bf16 timestep would round 953.05 to
    952), and returns float32 (float64 for float64 inputs), so errors accumulate unclipped.

    Conditioning: labels that ``profile`` hands over (``labels=`` or a labelled reader) go to
    ``encoder_hidden_states`` when they are float (rows, tokens, width) text embeddings, else to
    ``class_labels``. A fixed ``encoder_hidden_states`` and SDXL's ``added_cond_kwargs`` (its
    ``text_embeds`` and ``time_ids``) may have batch 1 (broadcast to every row) or the batch's size."""

    def __init__(self, model, scheduler, prediction_type=None, encoder_hidden_states=None, added_cond_kwargs=None):
        super().__init__(model)
        self.added_cond_kwargs = dict(added_cond_kwargs or {})
        self.scheduler = scheduler
        self.register_buffer("log_sigmas", vp_log_sigmas(scheduler), persistent=False)
        self.prediction_type = prediction_type or scheduler.config.get("prediction_type", "epsilon")
        if self.prediction_type not in ("epsilon", "v_prediction", "sample"):
            raise InputError(f"prediction_type must be epsilon, v_prediction or sample, got {self.prediction_type!r}")
        if encoder_hidden_states is None:
            self.encoder_hidden_states = None
        else:
            self.register_buffer("encoder_hidden_states", torch.as_tensor(encoder_hidden_states), persistent=False)
        self.sigma_min, self.sigma_max = float(self.log_sigmas[0].exp()), float(self.log_sigmas[-1].exp())
        self.description = f"diffusers VP adapter({type(model).__name__}, {self.prediction_type})"

    @property
    def model(self):
        """The wrapped diffusers network."""
        return self.net

    def settings(self):
        """What determines this denoiser's output besides the network: not the scheduler's state."""
        return {"log_sigmas": self.log_sigmas, "prediction_type": self.prediction_type,
                "encoder_hidden_states": self.encoder_hidden_states, "added_cond_kwargs": self.added_cond_kwargs}

    def timestep(self, sigma):
        """What the scheduler feeds the network at each sigma: ``0.25 log sigma`` where it is configured with
        ``timestep_type="continuous"`` and v-prediction (EulerDiscreteScheduler does so), else the continuous
        training timestep (see :func:`continuous_timesteps`)."""
        cfg = self.scheduler.config
        if cfg.get("timestep_type") == "continuous" and cfg.get("prediction_type") == "v_prediction":
            return 0.25 * sigma.to(torch.float64).clamp_min(1e-30).log()
        return continuous_timesteps(sigma, self.log_sigmas)

    def forward(self, x, sigma, labels=None):
        net_dtype = self.dtype or x.dtype
        s = sigma.to(torch.float64).reshape(-1, *([1] * (x.ndim - 1)))
        root = (1 + s**2).sqrt()
        xin = (x.to(torch.float64) / root).to(net_dtype)
        t = self.timestep(sigma.reshape(-1)).to(torch.float64 if net_dtype == torch.float64 else torch.float32)
        kwargs = {}
        if self.encoder_hidden_states is not None:
            kwargs["encoder_hidden_states"] = _rows_for(self.encoder_hidden_states, x.shape[0], "encoder_hidden_states")
        if self.added_cond_kwargs:
            kwargs["added_cond_kwargs"] = {k: _rows_for(v, x.shape[0], f"added_cond_kwargs[{k!r}]")
                                           for k, v in self.added_cond_kwargs.items()}
        if labels is not None:
            text = labels.is_floating_point() and labels.ndim == 3
            kwargs["encoder_hidden_states" if text else "class_labels"] = labels.to(net_dtype) if text else labels
        out = self.net(xin, t, **kwargs)
        out = (out.sample if hasattr(out, "sample") else out).to(torch.float64)
        if self.prediction_type == "epsilon":  # x0 = x - s eps
            x0 = x.to(torch.float64) - s * out
        elif self.prediction_type == "v_prediction":  # v = sqrt(a) eps - sqrt(1-a) x0
            x0 = (x.to(torch.float64) / root - s * out) / root
        else:
            x0 = out
        return x0.to(torch.float64 if x.dtype == torch.float64 else torch.float32)


def _rows_for(t, rows, name):
    """A conditioning tensor for a batch of ``rows``: batch 1 broadcast, or already ``rows``."""
    t = torch.as_tensor(t)
    if t.shape[0] == rows:
        return t
    if t.shape[0] == 1:
        return t.expand(rows, *t.shape[1:])
    raise InputError(f"{name} has batch {t.shape[0]}, the model's batch is {rows}: pass one row (broadcast to "
                     "every sample) or per-sample conditioning as profile(..., labels=...)")


def denoiser(model: torch.nn.Module, scheduler: Any, prediction_type: Optional[str] = None,
             encoder_hidden_states: Optional[torch.Tensor] = None, added_cond_kwargs: Optional[dict] = None) -> "VPDenoiser":
    """The EDM denoiser of a diffusers VP model (see :class:`VPDenoiser`).

    Parameters
    ----------
    model : torch.nn.Module
        A ``UNet2DModel`` or ``UNet2DConditionModel`` (or any ``model(x, t, ...)`` with ``.sample``).
    scheduler : diffusers scheduler
        The model's scheduler: its ``alphas_cumprod`` maps sigma to the timestep the model takes.
    prediction_type : str, optional
        ``epsilon``, ``v_prediction`` or ``sample`` (default the scheduler's ``config.prediction_type``).
    encoder_hidden_states : torch.Tensor, optional
        One text embedding for every sample (per-sample embeddings: ``ef.profile(..., labels=...)``).
    added_cond_kwargs : dict, optional
        SDXL's extra conditioning (``text_embeds``, ``time_ids``).

    Returns
    -------
    VPDenoiser
        ``denoiser(x, sigma, labels=None) -> x0_hat`` in EDM form."""
    return VPDenoiser(model, scheduler, prediction_type, encoder_hidden_states, added_cond_kwargs)


def profile_pipeline(pipe, images, prompts, sigmas=None, *, samples=256, seed=0, encode_batch_size=16,
                     **profile_kwargs):
    """Profile a diffusers text-to-image pipeline's UNet on its own latents and captions.

    ``images`` (N, 3, H, W) in [-1, 1] are encoded once by ``pipe.vae`` (``data.encode``, scaled by
    its ``scaling_factor``, one noise draw each, in batches of ``encode_batch_size``); ``prompts``
    (one string, or one per image) by the pipeline's own text encoder (``pipe.encode_prompt``); the
    sigma grid spans the scheduler's range (128 points) unless ``sigmas`` is given. Each sample's
    caption embedding reaches the UNet as ``encoder_hidden_states``. Other arguments go to
    ``profile``. ``pipe(prompt, **to_diffusers(schedule(...), pipe.scheduler))`` then samples with the schedule.

    Parameters
    ----------
    pipe : diffusers pipeline
        A text-to-image pipeline with ``unet``, ``vae``, ``scheduler`` and ``encode_prompt``.
    images : torch.Tensor
        ``(N, 3, H, W)`` images in [-1, 1].
    prompts : str or list of str
        One caption, or one per image.
    sigmas : array_like, optional
        The grid (default 128 points over the scheduler's range).
    samples, seed : int
        Samples per sigma; the seed of the noise and of the latents' draws.
    encode_batch_size : int
        Images per VAE and text-encoder call.
    **profile_kwargs
        Passed to ``ef.profile`` (``batch_size=``, ``checkpoint=``, ...).

    Returns
    -------
    Profile
        The UNet's profile on the pipeline's own latents and captions."""
    from ..data import encode
    from ..profiling import profile
    from ..grids import sigma_grid

    images = torch.as_tensor(images)
    if images.ndim != 4 or not images.is_floating_point():
        raise InputError(f"images must be a float tensor (N, C, H, W) in [-1, 1], got {images.dtype} "
                         f"{tuple(images.shape)}")
    if float(images.min()) < -1.001 or float(images.max()) > 1.001:
        raise InputError(f"images must lie in [-1, 1] (diffusers' convention), got {float(images.min()):.3g} .. "
                         f"{float(images.max()):.3g}")
    n = images.shape[0]
    prompts = [prompts] * n if isinstance(prompts, str) else list(prompts)
    if len(prompts) != n:
        raise InputError(f"prompts must be one string or one per image ({n}), got {len(prompts)}")
    device = pipe.unet.device
    gen = torch.Generator().manual_seed(int(seed))
    scale = float(getattr(pipe.vae.config, "scaling_factor", 1.0))
    with torch.no_grad():
        latents = torch.cat([encode(pipe.vae, part, gen, scale) for part in images.split(encode_batch_size)])
        emb = torch.cat([pipe.encode_prompt(prompts[i:i + encode_batch_size], device, 1, False)[0]
                         for i in range(0, n, encode_batch_size)])
    den = VPDenoiser(pipe.unet, pipe.scheduler)
    grid = sigma_grid(128, den.sigma_min, den.sigma_max) if sigmas is None else sigmas
    return profile(den, latents, grid, samples=samples, seed=seed, labels=emb, **profile_kwargs)


def _flow_kwargs(t, scheduler, shift_key="shift"):
    """Flow sigmas for a flow-matching scheduler (FlowMatchEulerDiscreteScheduler, or UniPC with
    ``use_flow_sigmas``), pre-inverted through its static shift (``shift`` / ``flow_shift``)."""
    cfg = scheduler.config
    if cfg.get("use_dynamic_shifting"):
        kind = cfg.get("time_shift_type", "exponential")
        return {"sigmas": t.tolist(), "mu": 0.0 if kind == "exponential" else 1.0}  # both make the shift the identity
    for flag in ("shift_terminal", "use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas", "invert_sigmas"):
        if cfg.get(flag):
            warnings.warn(f"{type(scheduler).__name__} has {flag} set: it will change the sigmas it is given",
                          stacklevel=3)
    k = float(getattr(scheduler, shift_key, cfg.get(shift_key, 1.0)))
    t = t / (k - (k - 1) * t)  # inverse of t -> k t / (1 + (k - 1) t)
    return {"sigmas": t if shift_key == "flow_shift" else t.tolist()}  # UniPC computes on an array


def _edm_ramp_kwargs(s, scheduler):
    """EDMEulerScheduler reads ``sigmas=`` as the ramp of its Karras schedule: invert the ramp (no trailing 0)."""
    cfg = scheduler.config
    if cfg.get("sigma_schedule", "karras") != "karras":
        raise InputError(f"{type(scheduler).__name__} with sigma_schedule={cfg.sigma_schedule!r} ignores the values of "
                         "custom sigmas (it uses only their count): configure it with sigma_schedule='karras'")
    rho = float(cfg.rho)
    hi, lo = float(cfg.sigma_max) ** (1 / rho), float(cfg.sigma_min) ** (1 / rho)
    ramp = (hi - s[:-1] ** (1 / rho)) / (hi - lo)
    return {"sigmas": torch.as_tensor(ramp, dtype=torch.float64)}


def _check_range(s, lo, hi, name):
    """Warn when the schedule leaves the sigma range the scheduler was trained on (it would clamp there)."""
    inner = s[:-1]
    if inner.max() > hi * (1 + 1e-6) or inner.min() < lo * (1 - 1e-6):
        warnings.warn(f"sigmas {inner.max():.4g} .. {inner.min():.4g} leave {name}'s trained range [{lo:.4g}, {hi:.4g}]: "
                      "it clamps the timestep there; build the schedule with sigma_min/sigma_max inside it", stacklevel=3)


def _vp_timesteps(s, scheduler, name, params):
    """Timesteps for our sigmas: fractional where the scheduler keeps them (Heun), else the nearest in log sigma."""
    cfg = scheduler.config
    for flag in ("use_karras_sigmas", "use_lu_lambdas", "use_exponential_sigmas", "use_beta_sigmas"):
        if cfg.get(flag):
            raise InputError(f"{name} with {flag}=True refuses custom timesteps (diffusers): configure it without "
                             f"{flag}, or use a scheduler that takes sigmas= (EulerDiscreteScheduler)")
    if cfg.get("use_flow_sigmas"):
        raise InputError(f"{name} with use_flow_sigmas=True takes no custom flow sigmas, and timesteps would be read "
                         "as VP ones: use FlowMatchEulerDiscreteScheduler or UniPCMultistepScheduler(use_flow_sigmas=True)")
    log_sigmas = vp_log_sigmas(scheduler).numpy()
    table, index = np.exp(log_sigmas), np.arange(len(log_sigmas), dtype=np.float64)
    _check_range(s, table[0], table[-1], name)
    fractional = "Heun" in name  # HeunDiscreteScheduler keeps float timesteps, its sigma linear in t between them
    if fractional:
        t = np.interp(s[:-1], table, index)
        got = np.interp(t, index, table)
    else:  # the others cast to int64: the nearest training timestep in log sigma
        t = np.abs(np.log(s[:-1])[:, None] - log_sigmas[None, :]).argmin(1)
        got = table[t]
    if np.any(np.diff(t) >= 0):
        raise InputError(f"{name} takes integer timesteps only, and these sigmas collapse onto repeated "
                         f"timesteps {np.asarray(t).tolist()}: use fewer steps or a scheduler that takes sigmas")
    err = float(np.max(np.abs(got / s[:-1] - 1)))
    if err > 1e-6:
        warnings.warn(f"{name} takes timesteps only: sigmas reach it to {err:.2%} (max relative error)"
                      f"{'' if fractional else ', rounded to its integer training timesteps'}", stacklevel=3)
    return {"timesteps": t.tolist()}


def _native_flow(scheduler):
    """True for a scheduler whose own sigmas are flow times (rectified flow: none above 1, no alphas_cumprod)."""
    if hasattr(scheduler, "alphas_cumprod"):
        return False
    trial = copy.deepcopy(scheduler)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trial.set_timesteps(8)
        own = np.asarray(torch.as_tensor(trial.sigmas, dtype=torch.float64))
    except Exception:  # noqa: BLE001 (a scheduler that cannot say is not taken for a flow one)
        return False
    return own.size > 1 and float(own.max()) <= 1.0 + 1e-6


def _flow_candidates(t, scheduler, key):
    """Flow-time keyword arguments to try, in order: through the configured shift and without the terminal 0
    (FlowMatchEulerDiscreteScheduler appends it), then with it, then plain times (schedulers that use custom
    sigmas as given: the LTX and MiniMax rectified-flow ones want the terminal 0)."""
    shifted = _flow_kwargs(t, scheduler, key)
    out = [shifted, {**shifted, "sigmas": np.append(shifted["sigmas"], 0.0)}]
    plain = [{"sigmas": t.tolist()}, {"sigmas": t.tolist() + [0.0]}]
    for kw in out + plain:
        if isinstance(kw["sigmas"], np.ndarray) and key == "shift":
            kw["sigmas"] = kw["sigmas"].tolist()
    return out + plain


def _kwargs(s, scheduler, name, params):
    """The keyword arguments to try for each kind of scheduler, best first (see :func:`to_diffusers`)."""
    flow = "FlowMatch" in name or _native_flow(scheduler)
    if flow or scheduler.config.get("use_flow_sigmas"):
        key = "shift" if flow else "flow_shift"
        if "sigmas" not in params:
            if flow:
                raise InputError(f"{name} takes no custom sigmas (diffusers): use FlowMatchEulerDiscreteScheduler")
            return _vp_timesteps(s, scheduler, name, params)  # raises: no way to give flow sigmas
        return _flow_candidates(sigma_to_t(s[:-1]), scheduler, key)
    if name.startswith("EDM"):
        if "sigmas" not in params:
            raise InputError(f"{name} takes no custom sigmas (diffusers): use EDMEulerScheduler")
        return _edm_ramp_kwargs(s, scheduler)
    if "sigmas" in params and "UniPC" not in name:  # UniPC takes sigmas= only as flow sigmas
        if hasattr(scheduler, "alphas_cumprod"):
            log_sigmas = vp_log_sigmas(scheduler).numpy()
            _check_range(s, np.exp(log_sigmas[0]), np.exp(log_sigmas[-1]), name)
        return {"sigmas": s.tolist()}
    if "timesteps" in params:
        if not hasattr(scheduler, "alphas_cumprod"):
            raise InputError(f"{name} takes only timesteps of its own convention (no alphas_cumprod to place our "
                             "sigmas on): use EulerDiscreteScheduler, or EDMEulerScheduler for EDM models")
        return _vp_timesteps(s, scheduler, name, params)
    raise InputError(f"{name}.set_timesteps accepts neither sigmas= nor timesteps= here; use a scheduler that does "
                     "(e.g. EulerDiscreteScheduler, DPMSolverMultistepScheduler, FlowMatchEulerDiscreteScheduler)")


def _verify(s, scheduler, name, kwargs):
    """``set_timesteps(**kwargs)`` on a copy: a refusal becomes our InputError; sigmas= that the scheduler turns
    into other sigmas than ours (EDM form, or flow times for a flow scheduler) are refused with the error."""
    trial = copy.deepcopy(scheduler)
    try:
        with warnings.catch_warnings():  # the trial's own warnings are the user's call's to give
            warnings.simplefilter("ignore")
            trial.set_timesteps(**kwargs)
    except Exception as e:  # noqa: BLE001 (diffusers' own TypeError / ValueError for what it does not take)
        raise InputError(f"{name} refuses custom {', '.join(kwargs)} ({type(e).__name__}: {e}); use a scheduler that "
                         "takes sigmas= (EulerDiscreteScheduler; FlowMatchEulerDiscreteScheduler for flow models)") from None
    got = getattr(trial, "sigmas", None)
    if got is None:
        return
    got = np.asarray(torch.as_tensor(got, dtype=torch.float64).cpu())
    if "timesteps" in kwargs:  # the timestep path warned with the error it reaches; the last sigma is the scheduler's
        _check_final(got, scheduler, name)
        return
    want = sigma_to_t(s) if float(np.max(got)) <= 1.0 + 1e-6 < s[0] else s
    ok = got.shape == want.shape and bool(np.all(np.abs(got - want) <= 2e-6 * np.abs(want) + 1e-12))
    if not ok:
        raise InputError(f"{name} turns these sigmas into {np.round(got[:6], 5).tolist()}... (wanted "
                         f"{np.round(want[:6], 5).tolist()}..., {got.size} values for {want.size}): use "
                         "EulerDiscreteScheduler, or FlowMatchEulerDiscreteScheduler for flow models")


def _check_final(got, scheduler, name):
    """Warn when the scheduler ends sampling above 0 (``final_sigmas_type="sigma_min"``): its last step then leaves
    noise of that sigma in the output, which the schedule's final 0 would have removed."""
    if got.size and got[-1] > 0:
        kind = scheduler.config.get("final_sigmas_type")
        warnings.warn(f"{name} ends sampling at sigma {got[-1]:.4g}, not 0 (final_sigmas_type={kind!r}): the output "
                      f"keeps noise of that sigma; to end at 0 as the schedule does, use "
                      f"{name}.from_config(scheduler.config, final_sigmas_type='zero')", stacklevel=4)


def to_diffusers(sigmas: Any, scheduler: Any) -> dict:
    """Keyword arguments for ``scheduler.set_timesteps`` that make it use our descending ``sigmas`` (trailing 0).

    ``sigmas=`` for schedulers that take EDM-form sigmas (EulerDiscreteScheduler and the like); the
    inverted Karras ramp for EDMEulerScheduler; flow sigmas ``t = s / (1 + s)`` for flow schedulers
    (FlowMatch*, and every scheduler whose own sigmas are flow times, such as the rectified-flow LTX, MiniMax
    and FlowMap ones) and UniPC with ``use_flow_sigmas``, their shift neutralised; ``timesteps=`` nearest in
    log sigma for VP schedulers that take only timesteps (fractional for Heun, which keeps them; the warning
    gives the sigma error reached). A schedule outside a VP scheduler's trained range warns (the timestep
    clamps there). Every answer is tried on a copy of the scheduler: what it refuses, or turns into other
    sigmas than ours, is refused here with an InputError naming a scheduler to use instead.

    Parameters
    ----------
    sigmas : array_like
        Descending EDM sigmas ending in 0 (``ef.schedule``'s output).
    scheduler : diffusers scheduler
        The pipeline's scheduler (it is not modified: the answer is tried on a copy).

    Returns
    -------
    dict
        Keyword arguments for ``scheduler.set_timesteps`` (and so for ``pipe(...)``): ``sigmas=``, ``timesteps=``
        or the flow / Karras parameters that reproduce ``sigmas``.
    """
    s = np.asarray(sigmas, np.float64)
    if s.ndim != 1 or s.size < 3 or not np.all(np.isfinite(s)) or s[-1] != 0 or np.any(np.diff(s) >= 0):
        raise InputError(f"sigmas must be finite, descending and end in 0, got {s}")
    name = type(scheduler).__name__
    candidates = _kwargs(s, scheduler, name, inspect.signature(scheduler.set_timesteps).parameters)
    first = None
    for kwargs in candidates if isinstance(candidates, list) else [candidates]:
        try:
            _verify(s, scheduler, name, kwargs)
            return kwargs
        except InputError as e:
            first = first or e
    raise first
