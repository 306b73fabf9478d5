"""Samplers that take a sigma list (k-diffusion convention: descending, ending in 0).

Each takes ``(denoiser, x, sigmas, generator=None, labels=None)`` with ``x`` the starting noise
already scaled by ``sigmas[0]``; the step arithmetic is float64, the denoiser sees ``x``'s dtype.
"""
import dataclasses
import math
from typing import Callable

import numpy as np
import torch

from . import checks
from .errors import InputError


def _check(x, sigmas):
    s = np.asarray(sigmas.detach().cpu() if torch.is_tensor(sigmas) else sigmas, np.float64)
    if s.ndim != 1 or s.size < 2 or not np.all(np.isfinite(s)) or s[-1] != 0 or np.any(s[:-1] <= 0) \
            or np.any(np.diff(s) >= 0):
        raise InputError(f"sigmas must be finite, descending, positive values ending in 0, got {s}")
    if not torch.is_tensor(x) or x.ndim < 2:
        raise InputError(f"x must be a batch tensor (B, *shape), got {getattr(x, 'shape', type(x).__name__)}")
    if not x.dtype.is_floating_point:
        raise InputError(f"x must be a floating-point tensor (the starting noise), got {x.dtype}")
    return [float(v) for v in s]


def _finished(x, dtype):
    """The sample in the caller's dtype; refused where the denoiser's output made it non-finite (one sync, at the
    end)."""
    if not bool(torch.isfinite(x).all()):
        raise InputError(f"the samples hold non-finite values ({int((~torch.isfinite(x)).sum())} of {x.numel()}): "
                         "the denoiser returned NaN or inf along the way")
    return x.to(dtype)


def _denoise(denoiser, x, s, labels, dtype):
    sigma = torch.full((x.shape[0],), s, dtype=torch.float64 if dtype == torch.float64 else torch.float32,
                       device=x.device)
    xin = x.to(dtype)
    out = denoiser(xin, sigma) if labels is None else denoiser(xin, sigma, labels)
    if not torch.is_tensor(out) or out.shape != x.shape or out.is_complex():
        raise InputError(f"denoiser output has shape {tuple(getattr(out, 'shape', ()))} at sigma={s:.6g}, expected "
                         f"real values of the input's shape {tuple(x.shape)} (got "
                         f"{getattr(out, 'dtype', type(out).__name__)})")
    return out.to(torch.float64)


def _normal(x, generator):
    """Standard normal noise shaped like ``x`` (float64): ``generator.normal(x)`` where the generator draws per row
    (``compare.RowNoise``: the same draws whatever the batch), else ``torch.randn`` with ``generator``."""
    draw = getattr(generator, "normal", None)
    if callable(draw):
        return draw(x).to(torch.float64)
    return torch.randn(x.shape, generator=generator, dtype=torch.float64, device=x.device)


@torch.no_grad()
def ddim(denoiser, x, sigmas, generator=None, labels=None, eta=0.0):
    """DDIM in sigma form (Song et al. 2021): ``eta=0`` deterministic (Euler on the probability-flow ODE),
    ``eta=1`` the DDPM posterior step ``x' = D + (s'^2/s^2)(x - D) + s' sqrt(1 - s'^2/s^2) z``."""
    s = _check(x, sigmas)
    eta = checks.real(eta, "eta")
    if not 0 <= eta <= 1:
        raise InputError(f"eta must be in [0, 1], got {eta}")
    dtype, x = x.dtype, x.to(torch.float64)
    for cur, nxt in zip(s[:-1], s[1:]):
        den = _denoise(denoiser, x, cur, labels, dtype)
        c = eta * nxt * math.sqrt(max(1.0 - nxt**2 / cur**2, 0.0))
        x = den + math.sqrt(max(nxt**2 - c**2, 0.0)) / cur * (x - den)
        if c > 0:
            x = x + c * _normal(x, generator)
    return _finished(x, dtype)


@torch.no_grad()
def heun(denoiser, x, sigmas, generator=None, labels=None):
    """EDM's second-order Heun sampler without churn (Karras et al. 2022, Alg. 1); Euler on the last step."""
    s = _check(x, sigmas)
    dtype, x = x.dtype, x.to(torch.float64)
    for cur, nxt in zip(s[:-1], s[1:]):
        d = (x - _denoise(denoiser, x, cur, labels, dtype)) / cur
        x_euler = x + (nxt - cur) * d
        if nxt == 0:
            x = x_euler
        else:
            d2 = (x_euler - _denoise(denoiser, x_euler, nxt, labels, dtype)) / nxt
            x = x + (nxt - cur) * 0.5 * (d + d2)
    return _finished(x, dtype)


def dpmpp_2m_update(x, den, old, cur, nxt, h_last, *, log=math.log, expm1=math.expm1):
    """One DPM-Solver++(2M) step from ``cur`` to ``nxt`` (Lu et al. 2022, Alg. 2): ``(x', h)``; ``old`` and ``h_last``
    are the previous step's denoised value and log-step (None on the first step: first order)."""
    h = log(cur) - log(nxt)
    if old is None:
        d = den
    else:
        r = h_last / h
        d = (1 + 1 / (2 * r)) * den - (1 / (2 * r)) * old
    return (nxt / cur) * x - expm1(-h) * d, h


@torch.no_grad()
def dpmpp_2m(denoiser, x, sigmas, generator=None, labels=None):
    """DPM-Solver++(2M) (Lu et al. 2022), multistep in ``t = -log sigma``; first-order on the first and last step."""
    s = _check(x, sigmas)
    dtype, x = x.dtype, x.to(torch.float64)
    old, h_last = None, None
    for cur, nxt in zip(s[:-1], s[1:]):
        den = _denoise(denoiser, x, cur, labels, dtype)
        if nxt == 0:
            x = den
            break
        x, h_last = dpmpp_2m_update(x, den, old, cur, nxt, h_last)
        old = den
    return _finished(x, dtype)


def _ddim_stochastic(denoiser, x, sigmas, generator=None, labels=None):
    """Stochastic DDIM (``eta=1``, the DDPM posterior step): k-diffusion's and ComfyUI's ``euler_ancestral``."""
    return ddim(denoiser, x, sigmas, generator, labels, eta=1.0)


# ---- each sampler on Gaussian data (gaussian.sampler_gain) --------------------------------------------------------
# With the exact denoiser D = g(s) x, g = lam / (lam + s^2), every sampler is linear in each eigen-direction: one step
# maps the state (amp: the start's factor; extra: independent variance added) as below. A step returns True to stop.

def _gain(lam, s):
    return lam / (lam + s**2)


def _ddim_step(st, lam, cur, nxt, last):
    """DDIM / Euler: ``x <- x + (nxt - cur) (x - D) / cur``."""
    factor = (lam + cur * nxt) / (lam + cur**2)
    st["amp"], st["extra"] = st["amp"] * factor, st["extra"] * factor**2


def _ddim_stochastic_step(st, lam, cur, nxt, last):
    """Stochastic DDIM: the DDPM posterior mean, plus noise of variance ``nxt^2 (1 - (nxt / cur)^2)``."""
    ratio = (nxt / cur) ** 2
    factor = _gain(lam, cur) + ratio * (1 - _gain(lam, cur))
    st["amp"], st["extra"] = st["amp"] * factor, st["extra"] * factor**2 + nxt**2 * (1 - ratio)


def _heun_step(st, lam, cur, nxt, last):
    """EDM's Heun: the Euler point, then the trapezoid of the two slopes (Euler alone on the last step)."""
    e = 1 + (nxt - cur) * (1 - _gain(lam, cur)) / cur
    st["amp"] = st["amp"] * (e if last else 1 + (nxt - cur) / 2 * ((1 - _gain(lam, cur)) / cur
                                                                   + (1 - _gain(lam, nxt)) / nxt * e))


def _dpmpp_2m_step(st, lam, cur, nxt, last):
    """DPM++(2M): :func:`dpmpp_2m_update` itself on the scalar state; the last step returns the denoised value."""
    den = _gain(lam, cur) * st["amp"]
    if last:
        st["amp"] = den
        return True
    st["amp"], st["h"] = dpmpp_2m_update(st["amp"], den, st.get("old"), cur, nxt, st.get("h"), log=st["log"],
                                         expm1=st["expm1"])
    st["old"] = den
    return False


# ---- the table of samplers -------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Sampler:
    """A sampler as the rest of the package needs it: how it runs, what a step costs, what the interval rule
    charges it (``surrogate``: the Gaussian recursion of ``gaussian.sampler_gain`` that ``interval`` minimises,
    measured in ``benchmarks/results/interval_rule.md``) and the kind that samples best with it (measured:
    ``benchmarks/results/compare_digits.md``, ``compare_digits16.md``: rescaled is the best of
    ours or within a spread of it in most rows, and needs nothing but the error curve). ``surrogate_steps``: the
    steps the rule charges per step of the sampler (DPM++(2M), a second-order multistep method, does the work of
    about two first-order steps: measured in ``interval_rule.md``)."""
    name: str
    run: Callable
    per_step: int  # network evaluations per step (Heun: 2, Euler on the last)
    stochastic: bool
    surrogate: str
    kind: str
    aliases: tuple = ()
    doc: str = ""
    surrogate_steps: int = 1
    gaussian_step: Callable = None  # one step on Gaussian data (gaussian.sampler_gain): the theory's recursion


TABLE = (
    Sampler("ddim", ddim, 1, False, "ddim", "rescaled", aliases=("euler",),
            doc="DDIM / Euler on the probability-flow ODE", gaussian_step=_ddim_step),
    Sampler("ddim-stochastic", _ddim_stochastic, 1, True, "ddim-stochastic", "rescaled", aliases=("euler_ancestral",),
            doc="stochastic DDIM / Euler ancestral", gaussian_step=_ddim_stochastic_step),
    Sampler("heun", heun, 2, False, "ddim", "rescaled", doc="EDM's Heun (2nd order)", gaussian_step=_heun_step),
    Sampler("dpmpp_2m", dpmpp_2m, 1, False, "ddim", "rescaled", aliases=("dpm++2m",), doc="DPM-Solver++(2M)",
            surrogate_steps=2, gaussian_step=_dpmpp_2m_step),
)
_BY_NAME = {n: t for t in TABLE for n in (t.name, *t.aliases)}
SAMPLERS = {t.name: t.run for t in TABLE}
NAMES = tuple(_BY_NAME)  # every name a sampler is known by


def get(name):
    """The table entry of sampler ``name`` (or one of its aliases), refused with the known names."""
    if not isinstance(name, str) or name not in _BY_NAME:
        raise InputError(f"unknown sampler {name!r}; known: {', '.join(NAMES)}")
    return _BY_NAME[name]


def evaluations(sampler, steps):
    """Denoiser calls of ``sampler`` over ``steps`` steps ending at 0: Heun's last step is Euler, so
    ``2 steps - 1``; the others one per step."""
    per = get(sampler).per_step
    return per * steps - (per - 1)


def steps_within(sampler, budget):
    """The most steps of ``sampler`` whose :func:`evaluations` fit ``budget`` (at least 1)."""
    per = get(sampler).per_step
    return max(1, (budget + per - 1) // per)
