"""A ComfyUI MODEL (a ``ModelPatcher``) as an EDM denoiser, read through duck typing (no ComfyUI import).

ComfyUI's ``model.model.apply_model(x, sigma, **conds)`` already returns the denoised latent, in the
VE convention ``x = x0 + sigma n`` for EPS / V / EDM models; flow models (the ``CONST`` model
sampling) take ``x_t = x / (1 + s)`` at ``t = s / (1 + s)``. A CONDITIONING reaches the model as
ComfyUI's samplers send it: ``extra_conds`` of the model, each cond repeated to the batch.
"""
import math

import torch

from ..errors import InputError
from .base import Adapter
from .flow import sigma_to_t, t_to_sigma


def model_sampling(model):
    """ComfyUI's model sampling object of a MODEL (ModelPatcher), or None."""
    get = getattr(model, "get_model_object", None)
    return get("model_sampling") if callable(get) else None


def is_flow(sampling):
    """ComfyUI marks flow-matching models by the CONST mixin of their model sampling."""
    return sampling is not None and any(c.__name__ == "CONST" for c in type(sampling).__mro__)


def _edm_range(sampling, flow_t_max=0.995):
    lo, hi = float(sampling.sigma_min), float(sampling.sigma_max)
    if is_flow(sampling):
        lo, hi = t_to_sigma(max(lo, 1e-4)), t_to_sigma(min(hi, flow_t_max))
    return lo, hi


def sigma_range(model, flow_t_max=0.995):
    """The model's sigma range in the EDM convention; a flow model's times are capped at ``flow_t_max``
    (``t = 1`` is ``sigma = inf``)."""
    sampling = model_sampling(model)
    if sampling is None:
        raise InputError(f"{type(model).__name__} is not a ComfyUI MODEL (it has no model_sampling)")
    return _edm_range(sampling, flow_t_max)


def model_record(model):
    """What a profile records of a ComfyUI MODEL (or of its model sampling): the sampling class (ComfyUI's
    ``model_base.model_sampling`` builds ``class ModelSampling(s, c)``, so the named base ``s``), the prediction
    mixin ``c`` (EPS, V_PREDICTION, EDM, CONST, ...: ComfyUI names them in capitals) and the EDM-convention
    range; None where there is no range to read."""
    sampling = model_sampling(model) or model
    if getattr(sampling, "sigma_min", None) is None or getattr(sampling, "sigma_max", None) is None:
        return None
    names = [c.__name__ for c in type(sampling).__mro__]
    kind = next((n for n in names if n.startswith("ModelSampling") and n not in ("ModelSampling",
                                                                                 "ModelSamplingAdvanced")), names[0])
    prediction = next((n for n in names if n.isupper()), "unknown")
    lo, hi = _edm_range(sampling)
    return {"sampling": kind, "prediction": prediction, "sigma_min": lo, "sigma_max": hi}


def _conditioning(c):
    """A ComfyUI CONDITIONING as a list of its ``[tensor, dict]`` pairs (CLIP Text Encode's output), or a clear
    error naming what came instead; None or empty: unconditional."""
    if c is None:
        return []
    pairs = list(c) if isinstance(c, (list, tuple)) else None
    ok = pairs is not None and all(isinstance(p, (list, tuple)) and len(p) == 2 and torch.is_tensor(p[0])
                                   and isinstance(p[1], dict) for p in pairs)
    if not ok:
        got = type(c).__name__ if pairs is None else f"a {type(c).__name__} of {[type(p).__name__ for p in pairs[:3]]}"
        raise InputError(f"conditioning must be a ComfyUI CONDITIONING (a list of [tensor, dict] pairs, as CLIP Text "
                         f"Encode gives), got {got}")
    return pairs


class ComfyDenoiser(Adapter):
    """``denoiser(x, sigma)`` over a ComfyUI MODEL, with an optional CONDITIONING (its first entry)."""

    def __init__(self, model, conditioning=None):
        base = getattr(model, "model", None)
        if base is None or not callable(getattr(base, "apply_model", None)):
            raise InputError(f"{type(model).__name__} is not a ComfyUI MODEL (it has no model.apply_model)")
        super().__init__(base)
        self.flow = is_flow(model_sampling(model))
        self.conditioning = _conditioning(conditioning)[:1]
        self.description = f"ComfyUI {type(base).__name__}" + (" (flow)" if self.flow else "")
        self._conds = {}

    def settings(self):
        return {"flow": self.flow, "conditioning": [c for c, _ in self.conditioning]}

    def _model_conds(self, x):
        """The conditioning as ``apply_model`` keywords for a batch like ``x`` (cached per batch shape)."""
        if not self.conditioning:
            return {}
        key = (tuple(x.shape), str(x.device))
        if key not in self._conds:
            cond, extra = self.conditioning[0]
            params = dict(extra, cross_attn=cond, device=x.device, noise=x, prompt_type="positive")
            if x.ndim >= 4:
                params.setdefault("width", x.shape[-1] * 8)
                params.setdefault("height", x.shape[-2] * 8)
            area = tuple(x.shape[2:]) + (0,) * (x.ndim - 2)
            conds = self.net.extra_conds(**params)
            self._conds = {key: {k: v.process_cond(batch_size=x.shape[0], device=x.device, area=area).cond
                                 for k, v in conds.items()}}
        return self._conds[key]

    def forward(self, x, sigma):
        s = sigma.to(torch.float32).reshape(-1)
        if self.flow:
            x, s = x.float() / (1 + s.reshape(-1, *([1] * (x.ndim - 1)))), sigma_to_t(s)
        return self.net.apply_model(x, s, **self._model_conds(x)).float()


def grid_for(model, points=128, sigma_min=None, sigma_max=None):
    """A log-spaced grid over the model's range (or the given ends)."""
    from ..grids import sigma_grid
    lo, hi = sigma_range(model)
    lo, hi = lo if sigma_min is None else sigma_min, hi if sigma_max is None else sigma_max
    if not (0 < lo < hi and math.isfinite(hi)):
        raise InputError(f"need 0 < sigma_min < sigma_max, got {lo} and {hi}")
    return sigma_grid(points, lo, hi)
