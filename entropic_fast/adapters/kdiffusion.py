"""k-diffusion-style schedule functions: descending torch sigma tensors with the zero appended."""
from typing import Any, Callable, Optional, Tuple  # noqa: F401
import warnings

import torch

from ..grids import karras
from ..schedules import schedule
from .flow import sigma_to_t, t_to_sigma

FLOAT32_SLACK = 1e-3  # model limits derived in float32 elsewhere (webui's) differ from a profile's by ~1e-5


def get_sigmas_entropic(n: int, profile: Any, kind: str = "rescaled", sigma_min: Optional[float] = None,
                        sigma_max: Optional[float] = None, device: str = "cpu", **options: Any) -> torch.Tensor:
    """``n`` sigmas of the ``kind`` schedule of ``profile`` then 0, like k-diffusion's ``get_sigmas_karras``."""
    return torch.tensor(schedule(profile, n, kind, sigma_min, sigma_max, **options), dtype=torch.float32,
                        device=device)


def _request(lo, hi, flow):
    """A client's (sigma_min, sigma_max) as EDM sigmas (None: the profile's end); flow times ``t`` when ``flow``,
    ``t`` near 1 (sigma infinite) meaning the profile's top."""
    lo, hi = (None if v is None else float(v) for v in (lo, hi))
    if flow:
        lo = None if lo is None or lo <= 0 else t_to_sigma(min(lo, 0.999999))
        hi = None if hi is None or hi >= 0.999 else t_to_sigma(hi)
    return lo, hi


def clip_to_profile(profile, lo, hi):
    """``(lo, hi)`` inside the profiled grid; a request beyond it by more than float32 rounding warns, naming
    both ranges; one wholly outside it takes the profile's whole range (a plugin never raises mid-generation)."""
    glo, ghi = float(profile.sigmas[0]), float(profile.sigmas[-1])
    want = (glo if lo is None else lo, ghi if hi is None else hi)
    if want[0] < glo * (1 - FLOAT32_SLACK) or want[1] > ghi * (1 + FLOAT32_SLACK):
        warnings.warn(f"entropic scheduler: sigma {want[0]:.6g} .. {want[1]:.6g} requested, the profile covers "
                      f"{glo:.6g} .. {ghi:.6g}: clipped to the profile (profile the model over the range you sample)",
                      stacklevel=3)
    out = (min(max(want[0], glo), ghi), min(max(want[1], glo), ghi))
    return out if out[0] < out[1] else (glo, ghi)


def scheduler(profile: Any, kind: str = "rescaled", flow: Optional[bool] = None, **options: Any) -> Callable:
    """An A1111 / Forge scheduler function ``(n, sigma_min, sigma_max, device)`` bound to ``profile``.

    Forge calls it as ``function(n=steps, sigma_min=..., sigma_max=..., device=...)`` with the model's limits
    (float32, or the user's settings): they are clipped to the profiled grid, with a warning naming both ranges
    when they reach beyond it. Flow models (Forge passes Flux's flow times, ``sigma_max`` 1) get flow times back:
    ``flow=None`` reads the convention from the request (``sigma_max <= 1``), True or False forces it. Register it
    as ``Scheduler("entropic", "Entropic", scheduler(prof))`` in ``sd_schedulers.schedulers`` and under its name
    and label in ``schedulers_map`` (the extension in ``integrations/webui`` does)."""
    def sigmas(n, sigma_min=None, sigma_max=None, device="cpu", **_):
        as_flow = flow if flow is not None else sigma_max is not None and float(sigma_max) <= 1.0
        lo, hi = clip_to_profile(profile, *_request(sigma_min, sigma_max, as_flow))
        s = get_sigmas_entropic(n, profile, kind, lo, hi, device=device, **options)
        return sigma_to_t(s) if as_flow else s

    sigmas.__name__ = sigmas.__qualname__ = f"entropic_{kind.replace('-', '_')}"
    return sigmas


def fallback(n, sigma_min, sigma_max, device="cpu"):
    """Karras et al.'s schedule over a client's range (flow times kept as such): what a plugin hands back, with a
    warning, when it has no profile to use."""
    lo, hi = float(sigma_min), float(sigma_max)
    if int(n) < 2:  # one step: from the top straight to 0
        return torch.tensor([hi, 0.0], dtype=torch.float32, device=device)
    if hi <= 1.0:
        s = karras(n, t_to_sigma(max(lo, 1e-4)), t_to_sigma(min(hi, 0.999)))
        return torch.tensor(sigma_to_t(s), dtype=torch.float32, device=device)
    return torch.tensor(karras(n, lo, hi), dtype=torch.float32, device=device)
