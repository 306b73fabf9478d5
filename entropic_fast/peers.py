"""The schedules users pick instead of ours, on any sigma range: ComfyUI's and A1111's schedulers and
Align-Your-Steps' published lists (the peers of ``kinds``).

ComfyUI's ``simple``, ``normal``, ``sgm_uniform``, ``ddim_uniform`` and ``beta`` pick sigmas from a model's
table of discrete sigmas; here they pick from Stable Diffusion's (``scaled_linear`` betas 0.00085 to 0.012 over
1000 steps, stored in float32 as ComfyUI's ``ModelSamplingDiscrete`` stores it), the model most users run them
on. ``linear_quadratic`` is a schedule in ``sigma / sigma_max`` (Mochi's), Align-Your-Steps' lists are the
paper's for SD 1.5, SDXL and SVD, interpolated log-linearly to other step counts as their paper and ComfyUI's
node do (to ``steps + 1`` levels, the last replaced by 0, as ComfyUI's ``AlignYourStepsScheduler`` does). Each is
then *mapped onto the range*: its nonzero sigmas ``t_i``, given on the range ``[a, b]`` of the model they were
made for (SD's ``[0.0292, 14.61]``; SVD's ``[0.002, 700]`` for ``ays-svd``), become
``s_i = exp(log smin + (log t_i - log a) / (log b - log a) (log smax - log smin))``: on SD's own range they are
ComfyUI's output itself (its last nonzero sigma is where ComfyUI puts it, not pinned to ``smin``), elsewhere the
same shape in log sigma. ``kl_optimal`` and ``polyexponential`` are formulas of the range itself.

Deliberate differences from ComfyUI (a125cd8): ``ddim_uniform`` gives exactly ``steps`` sigmas (ComfyUI's rule
gives one more for some counts; the largest is left out), ``beta`` keeps ``steps`` distinct sigmas where rounding
to the table would repeat one (ComfyUI drops the repeat and takes a step fewer).
"""
import math

import numpy as np

from . import curves
from .errors import InputError

SD_BETAS = (0.00085, 0.012, 1000)  # Stable Diffusion's scaled_linear training schedule


def sd_alphas_cumprod():
    """Stable Diffusion's ``alphas_cumprod`` (float64), one per training timestep."""
    lo, hi, n = SD_BETAS
    return np.cumprod(1.0 - np.linspace(lo**0.5, hi**0.5, n, dtype=np.float64) ** 2)


def sd_sigmas():
    """Stable Diffusion's 1000 discrete sigmas, ascending, as ComfyUI stores them (float32, read as float64)."""
    ac = sd_alphas_cumprod()
    return (((1 - ac) / ac) ** 0.5).astype(np.float32).astype(np.float64)


def _table_sigma(t, table):
    """ComfyUI's ``ModelSamplingDiscrete.sigma``: log sigma interpolated linearly between table entries."""
    logs = np.log(table).astype(np.float32).astype(np.float64)
    t = np.clip(np.asarray(t, np.float64), 0, len(table) - 1)
    lo, hi = np.floor(t).astype(int), np.ceil(t).astype(int)
    w = t - lo
    return np.exp((1 - w) * logs[lo] + w * logs[hi])


def sd_range():
    """``(sigma_min, sigma_max)`` of Stable Diffusion's table: the range ComfyUI's schedulers are made for."""
    table = sd_sigmas()
    return float(table[0]), float(table[-1])


SVD_RANGE = (0.002, 700.0)


def onto(sigmas, smin, smax, source=None):
    """Nonzero descending ``sigmas`` given on the range ``source = (a, b)`` (default: their own ends) mapped
    log-linearly onto ``[smin, smax]``, then 0 appended. Sigmas at ``a`` or ``b`` (to float32 rounding: ComfyUI's
    tables are float32) land exactly on ``smin``, ``smax``."""
    t = curves.log(np.asarray(sigmas, np.float64))
    if t.size < 2 or not np.all(np.diff(t) < 0):
        raise InputError(f"a peer schedule must be strictly descending, got {np.exp(t)}")
    lo, hi = (t[-1], t[0]) if source is None else (curves.log(source[0]), curves.log(source[1]))
    u = np.clip((t - lo) / (hi - lo), 0.0, 1.0)
    u[np.abs(u - 1.0) * (hi - lo) < 1e-6], u[np.abs(u) * (hi - lo) < 1e-6] = 1.0, 0.0
    out = curves.exp(curves.log(smin) + u * (curves.log(smax) - curves.log(smin)))
    out[u == 1.0], out[u == 0.0] = smax, smin
    return np.append(out, 0.0)


# ---- ComfyUI's schedulers on SD's table (comfy/samplers.py, ComfyUI a125cd8) ----------------------------------

def simple(steps):
    """ComfyUI's ``simple``: every ``1000 / steps``-th table sigma from the top."""
    table = sd_sigmas()
    return np.array([table[-(1 + int(x * len(table) / steps))] for x in range(steps)])


def normal(steps, sgm=False):
    """ComfyUI's ``normal`` (timesteps equally spaced from 999 to 0) and ``sgm_uniform`` (``sgm``: ``steps + 1``
    of them, the last dropped)."""
    table = sd_sigmas()
    ts = np.linspace(len(table) - 1, 0, steps + 1)[:-1] if sgm else np.linspace(len(table) - 1, 0, steps)
    return _table_sigma(ts.astype(np.float32), table)


def ddim_uniform(steps):
    """ComfyUI's ``ddim_uniform``: every ``1000 // steps``-th table sigma from index 1 up (the lowest ``steps``
    of them: where ComfyUI's rule gives one more, its largest is left out)."""
    table = sd_sigmas()
    stride = max(len(table) // steps, 1)
    idx = [x for x in range(1, len(table), stride)][:steps]
    return table[idx][::-1]


def beta(steps, alpha=0.6, b=0.6):
    """ComfyUI's ``beta`` (Lee et al. 2024, "Beta Sampling is All You Need"): table timesteps at the ``Beta(alpha,
    b)`` quantiles of ``1 - i / steps``, rounded to the table (unrounded where rounding would repeat one)."""
    table = sd_sigmas()
    q = 1 - np.linspace(0, 1, steps, endpoint=False)
    t = beta_ppf(q, alpha, b) * (len(table) - 1)
    r = np.rint(t)
    return _table_sigma(r if np.unique(r).size == r.size else t, table)


def linear_quadratic(steps, threshold_noise=0.025, linear_steps=None):
    """ComfyUI's ``linear_quadratic`` (Mochi's): linear to ``threshold_noise`` over half the steps, then quadratic,
    in ``sigma / sigma_max``."""
    linear_steps = steps // 2 if linear_steps is None else linear_steps
    lin = [i * threshold_noise / linear_steps for i in range(linear_steps)]
    diff = linear_steps - threshold_noise * steps
    quad_steps = steps - linear_steps
    qc = diff / (linear_steps * quad_steps**2)
    lc = threshold_noise / linear_steps - 2 * diff / quad_steps**2
    const = qc * linear_steps**2
    quad = [qc * i**2 + lc * i + const for i in range(linear_steps, steps)]
    return 1.0 - np.array(lin + quad)


def kl_optimal(steps, smin, smax):
    """``kl_optimal`` (ComfyUI, A1111; Sabour et al., the tangent law of scale 1):
    ``tan((1 - i/(K-1)) atan(smax) + i/(K-1) atan(smin))``, then 0."""
    i = np.arange(steps) / (steps - 1)
    out = np.tan(i * math.atan(smin) + (1 - i) * math.atan(smax))
    out[0], out[-1] = smax, smin
    return np.append(out, 0.0)


def polyexponential(steps, smin, smax, rho=1.0):
    """``polyexponential`` (k-diffusion, A1111; rho 1 by default, where it is ``exponential``): log sigma
    interpolated along ``ramp ** rho``, ``ramp`` from 1 to 0."""
    ramp = np.linspace(1, 0, steps) ** rho
    out = curves.exp(ramp * (curves.log(smax) - curves.log(smin)) + curves.log(smin))
    out[0], out[-1] = smax, smin
    return np.append(out, 0.0)


# ---- Align Your Steps (Sabour, Fidler, Kreis 2024): the published 10-step lists ------------------------------

AYS = {"sd15": [14.6146412293, 6.4745760956, 3.8636745985, 2.6946151520, 1.8841921177, 1.3943805092, 0.9642583904,
                0.6523686016, 0.3977456272, 0.1515232662, 0.0291671582],
       "sdxl": [14.6146412293, 6.3184485287, 3.7681790315, 2.1811480769, 1.3405244945, 0.8620721141, 0.5550693289,
                0.3798540708, 0.2332364134, 0.1114188177, 0.0291671582],
       "svd": [700.00, 54.5, 15.886, 7.977, 4.248, 1.789, 0.981, 0.403, 0.173, 0.034, 0.002]}


def ays(model, steps):
    """Align-Your-Steps' ``steps`` nonzero sigmas for ``model`` as ComfyUI's ``AlignYourStepsScheduler`` gives
    them: the published list interpolated log-linearly to ``steps + 1`` levels (their ``loglinear_interp``), the
    last level replaced by 0 (so the last nonzero sigma is above the list's smallest)."""
    return ays_levels(model, steps + 1)[:-1]


def ays_levels(model, n):
    """The published list for ``model`` interpolated log-linearly to ``n`` levels (their ``loglinear_interp``)."""
    levels = np.array(AYS[model], np.float64)
    xs, ys = np.linspace(0, 1, levels.size), np.log(levels[::-1])
    return np.exp(np.interp(np.linspace(0, 1, n), xs, ys))[::-1]


# ---- the Beta quantile, without scipy ------------------------------------------------------------------------

def _betacf(x, a, b, iterations=300):
    """The continued fraction of the incomplete beta function at every element of ``x`` (Lentz's method;
    Numerical Recipes 6.4); an element stops changing once it has converged."""
    tiny = 1e-300
    keep = lambda v: np.where(np.abs(v) > tiny, v, tiny)  # noqa: E731
    c, d = np.ones_like(x), 1.0 / keep(1.0 - (a + b) * x / (a + 1))
    h, live = d.copy(), np.ones(x.shape, bool)
    for m in range(1, iterations + 1):
        for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                    -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = np.where(live, 1.0 / keep(1.0 + num * d), d)
            c = np.where(live, keep(1.0 + num / c), c)
            h = np.where(live, h * d * c, h)
        live &= ~(np.abs(d * c - 1.0) < 1e-15)
        if not live.any():
            break
    return h


def beta_cdf(x, a, b):
    """The regularised incomplete beta function ``I_x(a, b)`` at every element of ``x`` (the portable exp/log)."""
    x = np.asarray(x, np.float64)
    inside = (x > 0) & (x < 1)
    y = np.where(inside, x, 0.5)
    front = curves.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * curves.log(y)
                       + b * curves.log(1.0 - y))
    low = y < (a + 1) / (a + b + 2)  # each element on the side where its continued fraction converges fast
    out = np.empty_like(y)
    out[low] = front[low] * _betacf(y[low], a, b) / a
    out[~low] = 1.0 - front[~low] * _betacf(1.0 - y[~low], b, a) / b
    return np.where(inside, out, (x >= 1).astype(np.float64))


def beta_ppf(q, a, b):
    """The ``Beta(a, b)`` quantile of every element of ``q`` by bisection on :func:`beta_cdf` (to 1e-15)."""
    q = np.asarray(q, np.float64)
    lo, hi = np.zeros_like(q), np.ones_like(q)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        below = beta_cdf(mid, a, b) < q
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    out = np.where((q <= 0) | (q >= 1), (q >= 1).astype(np.float64), 0.5 * (lo + hi))
    return float(out) if out.ndim == 0 else out
