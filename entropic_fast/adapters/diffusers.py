"""diffusers VP models as EDM denoisers, and our sigmas as the keyword arguments a diffusers scheduler takes."""
import inspect
import warnings

import numpy as np
import torch

from ..errors import InputError


def _vp_log_sigmas(scheduler):
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


class VPDenoiser(torch.nn.Module):
    """A diffusers ``UNet2DModel`` / ``UNet2DConditionModel`` with a VP ``alphas_cumprod`` as an EDM denoiser:
    ``s = sqrt((1 - a) / a)``, input ``x / sqrt(1 + s^2)``, timestep by log-sigma interpolation.

    A module: it carries the network's ``dtype`` and ``device`` (which ``profile`` reads), feeds the
    network its own dtype, keeps the timestep in float32 (a bf16 timestep would round 953.05 to
    952), and returns float32 (float64 for float64 inputs), so errors accumulate unclipped."""

    def __init__(self, model, scheduler, prediction_type=None, encoder_hidden_states=None):
        super().__init__()
        self.model, self.scheduler = model, scheduler
        self.register_buffer("log_sigmas", _vp_log_sigmas(scheduler), persistent=False)
        self.prediction_type = prediction_type or scheduler.config.get("prediction_type", "epsilon")
        if self.prediction_type not in ("epsilon", "v_prediction", "sample"):
            raise InputError(f"prediction_type must be epsilon, v_prediction or sample, got {self.prediction_type!r}")
        if encoder_hidden_states is None:
            self.encoder_hidden_states = None
        else:
            self.register_buffer("encoder_hidden_states", torch.as_tensor(encoder_hidden_states), persistent=False)
        self.sigma_min, self.sigma_max = float(self.log_sigmas[0].exp()), float(self.log_sigmas[-1].exp())
        self.description = f"diffusers VP adapter({type(model).__name__}, {self.prediction_type})"

    def _first_parameter(self):
        params = self.model.parameters() if isinstance(self.model, torch.nn.Module) else ()
        return next((p for p in params if p.is_floating_point()), None)

    @property
    def dtype(self):
        """The network's floating dtype (None for a network without parameters)."""
        p = self._first_parameter()
        return None if p is None else p.dtype

    @property
    def device(self):
        p = self._first_parameter()
        return self.log_sigmas.device if p is None else p.device

    def fingerprint(self):
        """What determines this denoiser's output (see entropic_fast.fingerprint): not the scheduler's state."""
        from ..fingerprint import fingerprint
        return fingerprint((self.model, self.log_sigmas, self.prediction_type, self.encoder_hidden_states))[0]

    def timestep(self, sigma):
        """Continuous timestep of each sigma: linear interpolation of the index in log sigma (clamped)."""
        ls = self.log_sigmas.to(sigma.device)
        u = sigma.to(torch.float64).clamp_min(1e-30).log().clamp(ls[0], ls[-1])
        hi = torch.searchsorted(ls, u).clamp(1, len(ls) - 1)
        lo = hi - 1
        frac = (u - ls[lo]) / (ls[hi] - ls[lo])
        return lo.to(torch.float64) + frac

    def forward(self, x, sigma, labels=None):
        net_dtype = self.dtype or x.dtype
        s = sigma.to(torch.float64).reshape(-1, *([1] * (x.ndim - 1)))
        root = (1 + s**2).sqrt()
        xin = (x.to(torch.float64) / root).to(net_dtype)
        t = self.timestep(sigma.reshape(-1)).to(torch.float64 if net_dtype == torch.float64 else torch.float32)
        kwargs = {}
        if self.encoder_hidden_states is not None:
            kwargs["encoder_hidden_states"] = self.encoder_hidden_states[: x.shape[0]]
        if labels is not None:
            kwargs["class_labels"] = labels
        out = self.model(xin, t, **kwargs)
        out = (out.sample if hasattr(out, "sample") else out).to(torch.float64)
        if self.prediction_type == "epsilon":  # x0 = x - s eps
            x0 = x.to(torch.float64) - s * out
        elif self.prediction_type == "v_prediction":  # v = sqrt(a) eps - sqrt(1-a) x0
            x0 = (x.to(torch.float64) / root - s * out) / root
        else:
            x0 = out
        return x0.to(torch.float64 if x.dtype == torch.float64 else torch.float32)


def denoiser(model, scheduler, prediction_type=None, encoder_hidden_states=None):
    """The EDM denoiser of a diffusers VP model (see :class:`VPDenoiser`)."""
    return VPDenoiser(model, scheduler, prediction_type, encoder_hidden_states)


def _flow_kwargs(t, scheduler):
    """Flow sigmas for FlowMatchEulerDiscreteScheduler, pre-inverted through its static shift."""
    cfg = scheduler.config
    if cfg.get("use_dynamic_shifting"):
        kind = cfg.get("time_shift_type", "exponential")
        return {"sigmas": t.tolist(), "mu": 0.0 if kind == "exponential" else 1.0}  # both make the shift the identity
    for flag in ("shift_terminal", "use_karras_sigmas", "use_exponential_sigmas", "use_beta_sigmas", "invert_sigmas"):
        if cfg.get(flag):
            warnings.warn(f"{type(scheduler).__name__} has {flag} set: it will change the sigmas it is given",
                          stacklevel=3)
    k = float(getattr(scheduler, "shift", cfg.get("shift", 1.0)))
    return {"sigmas": (t / (k - (k - 1) * t)).tolist()}  # inverse of t -> k t / (1 + (k - 1) t)


def to_diffusers(sigmas, scheduler):
    """Keyword arguments for ``scheduler.set_timesteps`` that make it use our descending ``sigmas`` (trailing 0).

    ``sigmas=`` for schedulers that take EDM-form sigmas (EulerDiscreteScheduler and the like);
    flow sigmas ``t = s / (1 + s)`` for FlowMatchEulerDiscreteScheduler with its shift neutralised;
    integer ``timesteps=`` (nearest in log sigma) for VP schedulers that take only timesteps.
    """
    s = np.asarray(sigmas, np.float64)
    if s.ndim != 1 or s.size < 3 or s[-1] != 0 or np.any(np.diff(s) >= 0):
        raise InputError(f"sigmas must be descending and end in 0, got {s}")
    name = type(scheduler).__name__
    params = inspect.signature(scheduler.set_timesteps).parameters
    if "FlowMatch" in name:
        return _flow_kwargs(s[:-1] / (1 + s[:-1]), scheduler)
    if "sigmas" in params:
        return {"sigmas": s.tolist()}
    if "timesteps" in params:
        log_sigmas = _vp_log_sigmas(scheduler).numpy()
        t = np.abs(np.log(s[:-1])[:, None] - log_sigmas[None, :]).argmin(1)
        if np.any(np.diff(t) >= 0):
            raise InputError(f"{name} takes integer timesteps only, and these sigmas collapse onto repeated "
                             f"timesteps {t.tolist()}: use fewer steps or a scheduler that takes sigmas")
        warnings.warn(f"{name} takes timesteps only: sigmas rounded to the nearest of its "
                      f"{len(log_sigmas)} training timesteps", stacklevel=2)
        return {"timesteps": t.tolist()}
    raise InputError(f"{name}.set_timesteps accepts neither sigmas= nor timesteps=; use a scheduler that does "
                     "(e.g. EulerDiscreteScheduler, DPMSolverMultistepScheduler, FlowMatchEulerDiscreteScheduler)")
