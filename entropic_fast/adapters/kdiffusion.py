"""k-diffusion-style schedule functions: descending torch sigma tensors with the zero appended."""
from typing import Any, Callable, Optional, Tuple  # noqa: F401

import torch

from .clients import clip_to_profile, karras, request, sigmas as client_sigmas


def get_sigmas_entropic(n: int, profile: Any, kind: str = "rescaled", sigma_min: Optional[float] = None,
                        sigma_max: Optional[float] = None, device: str = "cpu", **options: Any) -> torch.Tensor:
    """``n`` sigmas of the ``kind`` schedule of ``profile`` then 0, like k-diffusion's ``get_sigmas_karras``.

    Parameters
    ----------
    n : int
        Steps (sigmas before the final 0).
    profile : Profile or str
        The model's profile (or its file).
    kind : str
        The schedule kind (``ef.kinds.KINDS``).
    sigma_min, sigma_max : float, optional
        Bounds (default the profile's range); our kinds choose their interval inside them.
    device : str or torch.device
        Where the tensor goes.
    **options
        Passed to ``ef.schedule`` (``sampler=``, ``interval=``).

    Returns
    -------
    torch.Tensor
        ``n + 1`` descending float32 sigmas ending in 0, for ``k_diffusion.sampling.sample_*``."""
    return client_sigmas(profile, n, kind, lo=sigma_min, hi=sigma_max, device=device, **options)


def scheduler(profile: Any, kind: str = "rescaled", flow: Optional[bool] = None, **options: Any) -> Callable:
    """An A1111 / Forge scheduler function ``(n, sigma_min, sigma_max, device)`` bound to ``profile``.

    Forge calls it as ``function(n=steps, sigma_min=..., sigma_max=..., device=...)`` with the model's limits
    (float32, or the user's settings): they are clipped to the profiled grid, with a warning naming both ranges
    when they reach beyond it. Flow models (Forge passes Flux's flow times, ``sigma_max`` 1) get flow times back:
    ``flow=None`` reads the convention from the request (``sigma_max <= 1``), True or False forces it. Register it
    as ``Scheduler("entropic", "Entropic", scheduler(prof))`` in ``sd_schedulers.schedulers`` and under its name
    and label in ``schedulers_map`` (the extension in ``integrations/webui`` does).

    Parameters
    ----------
    profile : Profile
        The model's profile.
    kind : str
        The schedule kind (``adapters.clients.KINDS`` for a profile without spectra).
    flow : bool, optional
        Flow times in and out (None: read from the request, ``sigma_max <= 1``).
    **options
        Passed to ``ef.schedule`` (``sampler=``, ``interval=``).

    Returns
    -------
    callable
        ``sigmas(n, sigma_min=None, sigma_max=None, device="cpu") -> torch.Tensor``, named ``entropic_<kind>``."""
    def sigmas(n, sigma_min=None, sigma_max=None, device="cpu", **_):
        as_flow = flow if flow is not None else sigma_max is not None and float(sigma_max) <= 1.0
        lo, hi = clip_to_profile(profile, *request(sigma_min, sigma_max, as_flow))
        return client_sigmas(profile, n, kind, lo=lo, hi=hi, flow=as_flow, device=device, **options)

    sigmas.__name__ = sigmas.__qualname__ = f"entropic_{kind.replace('-', '_')}"
    return sigmas


fallback = karras  # what the A1111 / Forge extension falls back on (``clients.karras``)
