"""Where a schedule starts and stops: the interval ``[sigma_min, sigma_max]`` that a kind spreads its steps over,
chosen from the profile for the sampler and the budget (docs/math.md, "Where a schedule starts and stops").

Every sampler starts from pure noise ``N(0, s_max^2)`` and ends with one denoiser call from the last nonzero sigma
``s_min`` to 0. Three errors follow, and the interval trades them: starting too low (the data not yet drowned in
the noise), stopping too high (the last call leaves the blur of ``e(s_min)``), and spreading few steps over too
wide a range (discretisation). All three are in closed form for Gaussian data (``gaussian.sampler_gain``), so the
rule takes the Gaussian whose error curve matches the profile (``gaussian.effective_spectrum``), runs the
candidate schedules through the sampler's recursion from pure noise, and keeps the interval of the smallest
Frechet distance (W2^2) between the output and the data:

    FD(s_min, s_max) = sum_k w_k (sqrt(v_k) - sqrt(lam_k))^2,   v_k = s_max^2 amp_k^2 + extra_k

It is exact on Gaussian data, budget-aware (with more steps the stop falls and the start rises) and sampler-aware
(each sampler's ``surrogate`` recursion, ``samplers.TABLE``). The second-order samplers are charged the first-order
recursion: on Gaussian data they are nearly exact at any step size, on a trained network they are not, and their
own recursion stops 3-10x too low; DPM++(2M) is charged it over twice its steps (``surrogate_steps``), as measured
in ``benchmarks/results/interval_rule.md``.
"""
import numpy as np

from . import checks, curves
from .errors import InputError
from .gaussian import effective_spectrum, sampler_gain
from .times import error_curve

GRID = 24  # candidate ends per axis in the first pass (log-spaced over the bounds)
REFINE = 9  # candidates per axis in the second pass, within one first-pass cell of the best
MIN_RATIO = 1.5  # the narrowest interval considered: s_max / s_min
NEAR = 0.02  # candidates within 2% of the smallest distance are as good: the rule takes their centre


def _schedules(u, phi, steps, a, b):
    """``(steps + 1, C, 1)`` sigmas: ``steps`` equal steps of the time ``phi`` (on ``u = log s``) from ``b`` down
    to ``a`` (arrays of ``C`` log-ends), then 0; the inverse is linear between grid points (a search only)."""
    pa, pb = np.interp(a, u, phi), np.interp(b, u, phi)
    frac = np.arange(steps)[:, None] / max(steps - 1, 1)
    targets = pb[None, :] - frac * (pb - pa)[None, :]
    s = curves.exp(np.interp(targets, phi, u))
    s[0], s[-1] = curves.exp(b), curves.exp(a)
    return np.concatenate([s, np.zeros((1, s.shape[1]))])[:, :, None]


def frechet(sigmas, eigenvalues, weights, sampler="ddim"):
    """The Frechet distance (W2^2) between Gaussian data ``N(0, diag(eigenvalues))`` (each direction counted
    ``weights`` times) and ``sampler``'s output through ``sigmas`` started from pure noise ``N(0, sigmas[0]^2)``;
    ``sigmas`` may hold ``C`` schedules as ``(steps + 1, C, 1)``."""
    amp, extra = sampler_gain(sigmas, eigenvalues, sampler)
    v = sigmas[0] ** 2 * amp**2 + extra
    return np.sum(weights * (np.sqrt(v) - np.sqrt(eigenvalues)) ** 2, axis=-1)


def _best(u, phi, steps, spectrum, sampler, ends):
    """``(log a, log b)``: the centre (in log sigma) of the candidates ``MIN_RATIO`` apart whose :func:`frechet` is
    within ``NEAR`` of the smallest. The optimum is flat, and its centre moves less with the profile's sampling
    noise than the argmin does."""
    (lam, w), (a, b) = spectrum, ends
    ok = b - a >= curves.log(MIN_RATIO)
    a, b = a[ok], b[ok]
    if a.size == 0:
        raise InputError(f"the range is too narrow to choose an interval in (less than {MIN_RATIO}x)")
    with np.errstate(all="ignore"):
        fd = frechet(_schedules(u, phi, steps, a, b), lam, w, sampler)
    fd = np.where(np.isfinite(fd), fd, np.inf)
    near = fd <= fd.min() * (1 + NEAR) + 1e-300
    return float(a[near].mean()), float(b[near].mean())


def choose(prof, steps, time, sampler="ddim", lo=None, hi=None, recursion=None):
    """``(sigma_min, sigma_max)`` within ``[lo, hi]`` (default the profile's grid) for ``steps`` equal steps of
    ``time`` (a cumulative time on ``prof.sigmas``, increasing) run by ``sampler``: the rule of this module,
    charging the Gaussian ``recursion`` (default the sampler's ``surrogate``, over its ``surrogate_steps`` per step)."""
    from . import samplers  # here: `import entropic_fast` does not load the samplers
    steps = checks.integer(steps, "steps", 2)
    entry = samplers.get(sampler)
    rule, charged = (entry.surrogate, steps * entry.surrogate_steps) if recursion is None else (recursion, steps)
    u = curves.log(prof.sigmas)
    phi = np.maximum.accumulate(np.asarray(time, np.float64))
    phi = phi + np.arange(phi.size) * 1e-12 * max(float(phi[-1]), 1e-300)  # strictly increasing for the inverse
    lo = prof.sigmas[0] if lo is None else lo
    hi = prof.sigmas[-1] if hi is None else hi
    if not hi >= lo * MIN_RATIO:
        return float(lo), float(hi)
    lam, w = effective_spectrum(prof, top=float(np.max(error_curve(prof))))  # no direction beyond tr Cov
    ends = np.linspace(curves.log(lo), curves.log(hi), GRID)
    a, b = (g.ravel() for g in np.meshgrid(ends, ends, indexing="ij"))
    a, b = _best(u, phi, charged, (lam, w), rule, (a, b))
    cell = ends[1] - ends[0]
    near = np.linspace(-cell, cell, REFINE)
    a, b = (g.ravel() for g in np.meshgrid(np.clip(a + near, ends[0], ends[-1]), np.clip(b + near, ends[0], ends[-1]),
                                           indexing="ij"))
    a, b = _best(u, phi, charged, (lam, w), rule, (a, b))
    a, b = curves.exp(a), curves.exp(b)  # the portable exp: the same bits on every CPU
    return float(min(max(a, lo), hi)), float(min(max(b, lo), hi))
