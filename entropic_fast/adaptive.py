"""Adaptive profiling: how many samples each sigma gets, from the band of the schedules a user asks for.

A *plan* is the number of work units (``UNIT`` samples each) per sigma; unit ``u`` of sigma ``i`` is the
same draw whatever the plan, so a plan's profile equals a fixed run over those units. After the pilot
plan, each round computes, by the delta method (``schedules.log_sigma_gradient``), the 95% band of every
inner sigma of every requested ``(kind, steps)`` schedule. If the widest band is within ``tolerance``
(relative) the run stops; else the next plan gives sigma ``j`` samples in the proportions
``sqrt(sum_i mu_i G_ij^2 v_j)`` (``v_j`` the per-sample variance, ``G`` the gradient of ``log s_i`` in
the errors; with the weights ``mu`` on the inner sigmas whose bands bind: the minimax allocation of
:func:`minimax_shape`), scaled by the smallest factor that brings every predicted band within
tolerance, growing the total by at most ``growth`` per round (so the variances are re-estimated on the
way) and never past the budget.
"""
import math
import warnings

import numpy as np

from . import checks, estimate
from .errors import InputError
from .grids import sigma_grid
from .schedules import KINDS, log_sigma_gradient, normal_quantile
from .units import UNIT

ADAPTIVE_POINTS = 64  # the default grid of an adaptive run: its pilot costs 64 x 32 rows


def targets(steps, kind):
    """``[(kind, steps), ...]``: every requested schedule (``steps`` and ``kind`` may be lists)."""
    steps = [steps] if np.ndim(steps) == 0 else list(steps)
    if not isinstance(kind, (str, list, tuple)):
        raise InputError(f"kind must be a schedule kind or a list of them, got {kind!r}")
    kinds = [kind] if isinstance(kind, str) else list(kind)
    if not steps or not kinds:
        raise InputError(f"steps and kind must be non-empty, got {steps!r} and {kinds!r}")
    for k in kinds:
        if not isinstance(k, str) or k not in KINDS or k in ("spectral", "gaussian-optimal"):
            raise InputError(f"adaptive profiling targets the kinds whose band is known (entropic, rescaled, las, "
                             f"tangent, ...), got {k!r}")
    return [(k, checks.integer(s, "steps", 2)) for k in kinds for s in steps]


def band(prof, goals, level=0.95):
    """``(half_width, grads, v)``: the widest relative half-band over every goal's inner sigmas, each goal's
    gradient matrix ``G`` (``schedules.log_sigma_gradient``), and the per-sample variance of each sigma."""
    z = normal_quantile(level)
    parts, worst = [], 0.0
    for kind, steps in goals:
        with warnings.catch_warnings():  # a pilot's profile is rough: the final profile's schedule warns
            warnings.simplefilter("ignore")
            _, grad, se = log_sigma_gradient(prof, steps, kind)
        var = (grad**2) @ (se**2)
        worst = max(worst, float(np.expm1(z * np.sqrt(var.max(initial=0.0)))))
        parts.append(grad)
    v = np.where(prof.count > 0, se**2 * prof.count, 0.0)  # se: the profile's stderr, the same for every goal
    return worst, parts, v


def minimax_shape(a, n, iterations=200):
    """Sample counts (up to scale) that minimise the largest ``sum_j a_ij / n_j`` over rows ``i``: for weights
    ``mu`` on the rows the best counts are ``sqrt(sum_i mu_i a_ij)`` (Neyman's rule for one weighted sum);
    multiplicative updates move ``mu`` onto the rows that bind (the minimax's dual)."""
    mu = np.full(a.shape[0], 1.0 / max(a.shape[0], 1))
    total = max(float(n.sum()), 1.0)
    for _ in range(iterations):
        shape = np.sqrt(mu @ a)
        if not shape.any():
            break
        m = shape * total / shape.sum()
        var = a @ (1.0 / np.maximum(m, 1e-300) * (shape > 0))
        mu = mu * (var / var.max()) ** 4
        mu /= mu.sum()
    return shape


def next_plan(prof, plan, goals, tolerance, level=0.95, budget_units=None, growth=2.0):
    """``(done, plan, half_width)`` after a round: ``done`` when the band is within ``tolerance`` or the
    budget (``budget_units`` units in all) is spent; else the next plan (units per sigma, never fewer
    than ``plan``)."""
    plan = np.asarray(plan, np.int64)
    half, grads, v = band(prof, goals, level)
    total = int(plan.sum())
    if half <= tolerance or (budget_units is not None and total >= budget_units):
        return True, plan, half
    limit = math.log1p(tolerance) ** 2 / normal_quantile(level) ** 2
    n = prof.count.astype(np.float64)
    a = np.concatenate(grads) ** 2 * v  # Var log s_i = sum_j a_ij / n_j, every goal's inner sigmas stacked
    weight = minimax_shape(a, n)
    cap = total * UNIT * growth if budget_units is None else min(total * UNIT * growth, budget_units * UNIT)

    def samples(c):
        return np.maximum(n, c * weight)

    def short(c):  # the predicted band still too wide, and the cap not reached
        m = samples(c)
        return float((a @ (1.0 / m)).max(initial=0.0)) > limit and m.sum() < cap

    lo, hi = 0.0, 1.0
    for _ in range(200):
        if not short(hi):
            break
        hi *= 2.0
    for _ in range(60):  # the smallest c meeting the tolerance, or the one spending the cap
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if short(mid) else (lo, mid)
    new = np.maximum(plan, np.round(samples(hi) / UNIT).astype(np.int64))  # nearest: a short fall costs a small round
    if budget_units is not None and new.sum() > budget_units:  # rounding to whole units overshot
        over = int(new.sum() - budget_units)
        for j in np.argsort(-(new - plan))[:over]:
            new[j] -= 1 if new[j] > plan[j] else 0
    if new.sum() == total:  # always progress: one more unit where the variance weighs most
        new[int(np.argmax(weight / np.maximum(n, 1)))] += 1
    return False, new, half


class PlanRule:
    """The decisions of an adaptive run, for ``estimate.profile(plan_rule=...)``: the pilot plan, the id
    space (``samples``: no sigma can hold more than the whole budget), and the next plan after a round."""

    def __init__(self, goals, tolerance, level, max_evaluations, pilot, growth=2.0):
        self.goals, self.tolerance, self.level, self.growth = goals, tolerance, level, growth
        self.max_evaluations = max_evaluations
        self.budget = max_evaluations // UNIT  # whole units in all
        self.pilot_units = -(-pilot // UNIT)
        self.samples = max(self.budget, 1) * UNIT  # the id space: no sigma can hold more

    def signature(self):
        """What determines the decisions (checked on resume, kept in the profile's meta)."""
        return {"tolerance": self.tolerance, "level": self.level, "targets": [list(g) for g in self.goals],
                "max_evaluations": self.max_evaluations, "pilot_units": self.pilot_units, "growth": self.growth}

    def pilot(self, n):
        if self.budget < n:
            raise InputError(f"max_evaluations={self.max_evaluations} is less than one unit ({UNIT} samples) per "
                             f"sigma ({n} sigmas): give at least {n * UNIT}")
        return np.full(n, min(self.pilot_units, self.budget // n), np.int64)

    def next(self, prof, plan):
        return next_plan(prof, plan, self.goals, self.tolerance, self.level, self.budget, self.growth)


def profile(denoiser, data, sigmas=None, *, samples=None, tolerance=None, steps=16, kind="rescaled",
            max_evaluations=131072, pilot=32, level=0.95, **options):
    """Monte-Carlo profile of ``e(s) = E||D(x0 + s n, s) - x0||^2`` on a sigma grid, with as many samples
    as the schedule needs (Stancevic et al. sec. 4; adaptive allocation of this library).

    ``samples=N`` takes ``N`` samples at every sigma (the paper: 1024) of ``sigmas`` (default:
    ``sigma_grid()``, 128 points), as ``estimate.profile``. Without it the run is adaptive, on ``sigmas``
    (default: ``sigma_grid(64)``; 32 points cost less and were as accurate on smooth error curves, see
    ``benchmarks/results/sample_efficiency.md``): a pilot of ``pilot`` samples per sigma, then rounds that spend samples where
    they narrow the ``level`` band of the ``kind`` schedule of ``steps`` steps most (both may be lists:
    the band must hold for each), until every inner sigma's band is within ``+-tolerance`` relative
    (default 0.01) or ``max_evaluations`` rows have been evaluated (then a warning gives the band
    reached). ``meta["evaluations"]`` counts every row evaluated, the pilot's included;
    ``meta["adaptive"]`` holds the band reached per round and the final plan. Deterministic for a seed;
    checkpoints resume mid-round; under ``torch.distributed`` every rank takes the same decision from
    the all-reduced sums. Every other argument is ``estimate.profile``'s (see there)."""
    if samples is not None:
        if tolerance is not None:
            raise InputError("give samples= (a fixed count per sigma) or tolerance= (adaptive), not both")
        return estimate.profile(denoiser, data, sigmas, samples=samples, **options)
    tolerance = 0.01 if tolerance is None else checks.real(tolerance, "tolerance", positive=True)
    level = checks.real(level, "level")
    if not (tolerance < 1 and 0 < level < 1):
        raise InputError(f"need 0 < tolerance < 1 and 0 < level < 1, got tolerance={tolerance}, level={level}")
    if options.get("shard") is not None:
        raise InputError("an adaptive run decides from the whole run's sums: split it with torch.distributed, or "
                         "give samples= to run fixed shards")
    rule = PlanRule(targets(steps, kind), tolerance, level, checks.integer(max_evaluations, "max_evaluations", 1),
                    checks.integer(pilot, "pilot", 2))
    prof = estimate.profile(denoiser, data, sigma_grid(ADAPTIVE_POINTS) if sigmas is None else sigmas,
                            plan_rule=rule, **options)
    reached = prof.meta["adaptive"]["rounds"][-1]["band"]
    if reached > tolerance:
        warnings.warn(f"adaptive profile stopped after {prof.meta['evaluations']} evaluations (max_evaluations="
                      f"{rule.max_evaluations}) with a {level:.0%} band of +-{reached:.2%} (asked +-{tolerance:.2%}); "
                      "raise max_evaluations to go on", stacklevel=2)
    return prof
