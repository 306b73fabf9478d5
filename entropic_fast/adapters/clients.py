"""What every client integration does around a schedule, written once: ComfyUI's nodes and KSampler entry, the
A1111 / Forge extension and k-diffusion's scheduler functions call these, and diffusers' conversion shares the flow
convention (``flow``).

- :func:`request`: a client's ``(sigma_min, sigma_max)`` read in its convention (flow times or EDM sigmas).
- :func:`clip_to_profile`: that range inside the profiled grid (a warning naming both when it reaches beyond).
- :func:`sigmas`: the schedule of a kind (and sampler) as the client takes it: float32, on its device, flow times
  for flow models.
- :func:`guarded`: the promise of every plugin, never an exception in the middle of a generation: the client's own
  fallback schedule and a warning that says why (:func:`karras` is the one for clients without their own).
- :data:`KINDS`: the kinds a client offers (``kinds.CLIENT_KINDS``).
"""
import logging
import warnings

import torch

from ..grids import karras as karras_sigmas
from ..kinds import CLIENT_KINDS
from ..schedules import schedule
from .flow import sigma_to_t, t_to_sigma

KINDS = CLIENT_KINDS  # what a profile without spectra gives, in every client's list
FLOAT32_SLACK = 1e-3  # model limits derived in float32 elsewhere (webui's) differ from a profile's by ~1e-5


def request(lo, hi, flow):
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


def sigmas(profile, steps, kind="rescaled", *, lo=None, hi=None, flow=False, device="cpu", **options):
    """``steps`` sigmas (then 0) of ``kind``'s schedule of ``profile`` within the EDM bounds ``lo``/``hi`` (None:
    the profile's), float32 on ``device``, as flow times ``t = s / (1 + s)`` when ``flow``; ``options`` go to
    ``ef.schedule`` (``sampler=``, ``interval=``)."""
    s = torch.tensor(schedule(profile, steps, kind, lo, hi, **options), dtype=torch.float32, device=device)
    return sigma_to_t(s) if flow else s


def guarded(build, fallback, say):
    """``build()``, or, where it raises anything, ``fallback()`` after a warning and a log line, ``say(exception)``,
    which says why and what the client gets instead: a plugin never raises in the middle of a generation."""
    try:
        return build()
    except Exception as e:  # noqa: BLE001  the promise of every plugin
        msg = say(e)
    logging.warning(msg)
    warnings.warn(msg, stacklevel=3)
    return fallback()


def karras(n, sigma_min, sigma_max, device="cpu"):
    """Karras et al.'s schedule over a client's range (flow times kept as such): the fallback of the clients that
    have no default schedule of their own to fall back on (A1111 / Forge's usual one)."""
    lo, hi = float(sigma_min), float(sigma_max)
    if int(n) < 2:  # one step: from the top straight to 0
        return torch.tensor([hi, 0.0], dtype=torch.float32, device=device)
    if hi <= 1.0:
        s = karras_sigmas(n, t_to_sigma(max(lo, 1e-4)), t_to_sigma(min(hi, 0.999)))
        return torch.tensor(sigma_to_t(s), dtype=torch.float32, device=device)
    return torch.tensor(karras_sigmas(n, lo, hi), dtype=torch.float32, device=device)
