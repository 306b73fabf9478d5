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

from . import checks, estimate, signals
from .checkpoint import CheckpointMismatch
from .control import row_variance
from .errors import InputError
from .kinds import BAND_KINDS
from .schedules import log_sigma_gradient, normal_quantile
from .units import UNIT, plan_rows, plan_units

# The default band, +-3% at every inner sigma: what sample quality needs (issue 31; the costs of 3% and 1% are
# measured in benchmarks/results/time_to_accuracy.md).
TOLERANCE = 0.03

def targets(steps, kind):
    """``[(kind, steps), ...]``: every requested schedule (``steps`` and ``kind`` may be lists)."""
    steps = [steps] if np.ndim(steps) == 0 else list(steps)
    if not isinstance(kind, (str, list, tuple)):
        raise InputError(f"kind must be a schedule kind or a list of them, got {kind!r}")
    kinds = [kind] if isinstance(kind, str) else list(kind)
    if not steps or not kinds:
        raise InputError(f"steps and kind must be non-empty, got {steps!r} and {kinds!r}")
    for k in kinds:
        if not isinstance(k, str) or k not in BAND_KINDS:
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


def next_plan(prof, plan, goals, tolerance, *, level=0.95, budget_units=None, growth=2.0):
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


def predicted_total(prof, goals, tolerance, level=0.95):
    """Samples in all that the profile's variances say meet ``tolerance`` (the minimax allocation, never fewer than
    each sigma has): what an adaptive run's progress bar counts towards, so that it shows an overall ETA."""
    _, grads, v = band(prof, goals, level)
    return _total(grads, v, prof.count, tolerance, level)


def _total(grads, v, count, tolerance, level):
    """:func:`predicted_total` from the goals' gradients and the per-sample variances ``v`` of each sigma."""
    a = np.concatenate(grads) ** 2 * v
    n = count.astype(np.float64)
    weight = minimax_shape(a, n)
    limit = math.log1p(tolerance) ** 2 / normal_quantile(level) ** 2
    live = weight > 0
    c = float((a[:, live] / weight[live]).sum(1).max(initial=0.0)) / limit
    return float(np.maximum(n, c * weight).sum())


class AdaptivePlan:
    """The plan of an adaptive run (``estimate.Run`` asks it what next): the pilot plan, the id space
    (``samples``: no sigma can hold more than the whole budget), and after each round the next plan, decided from
    the profile so far; its rounds (evaluations and band of each) go into checkpoints and the profile's meta."""

    def __init__(self, goals, tolerance, level, max_evaluations, pilot, growth=2.0, prior=None):
        self.goals, self.tolerance, self.level, self.growth = goals, tolerance, level, growth
        self.prior = prior
        self.max_evaluations = max_evaluations
        self.budget = max_evaluations // UNIT  # whole units in all
        self.pilot_units = -(-pilot // UNIT)
        self.samples = max(self.budget, 1) * UNIT  # the id space: no sigma can hold more
        self.plan, self.records, self.expected = None, [], 0.0

    def decisions(self):
        """What determines the decisions (checked on resume, kept in the profile's meta)."""
        out = {"tolerance": self.tolerance, "level": self.level, "targets": [list(g) for g in self.goals],
               "max_evaluations": self.max_evaluations, "pilot_units": self.pilot_units, "growth": self.growth}
        if self.prior is not None:
            out["prior"] = _describe_prior(self.prior)
        return out

    def signature(self):
        return {"adaptive": self.decisions()}

    def start(self, n):
        if self.budget < n:
            raise InputError(f"max_evaluations={self.max_evaluations} is less than one unit ({UNIT} samples) per "
                             f"sigma ({n} sigmas): give at least {n * UNIT}")
        self.plan = np.full(n, min(self.pilot_units, self.budget // n), np.int64)
        if self.prior is not None:
            self.plan = prior_plan(self.prior, self.goals, self.level, int(self.plan.sum()))

    def units(self, shard, finished):
        return plan_units(self.plan, shard, finished)

    def rows(self, shard):
        """Rows of this shard's units of the plan, or of the predicted final plan where that is larger (an ETA)."""
        return max(plan_rows(self.plan, shard), int(self.expected / shard[1]))

    def next(self, so_far):
        """True when the band of the profile so far (``so_far()``) is within tolerance or the budget is spent;
        else the next plan is taken, with this round's record."""
        prof = so_far()
        done, new, half = next_plan(prof, self.plan, self.goals, self.tolerance, level=self.level,
                                          budget_units=self.budget, growth=self.growth)
        if not done:
            self.expected = min(predicted_total(prof, self.goals, self.tolerance, self.level), self.budget * UNIT)
        record = {"evaluations": int(self.plan.sum()) * UNIT, "band": half}
        if done and self.records and self.records[-1]["evaluations"] == record["evaluations"]:
            return True  # a resumed finished run has its last round already
        with signals.held():  # the plan and its record together
            self.records.append(record)
            self.plan = self.plan if done else new
        return done

    def controls_pay(self, prof, seconds, control_seconds, rows):
        """``control="auto"``'s decision after the pilot, with its numbers (for the meta and the checkpoint): on
        only where the predicted wall time to the tolerance is shorter with the controls (the samples still to draw
        by their variances, :func:`predicted_total`, at the pilot's seconds per row) than without (by the plain
        variances, at those seconds less the controls' own). The controlled variances are the residual ones per
        row (:func:`control.row_variance`), without the pilot's small-sample share of the standard error: the
        rounds to come draw many more rows per sigma, where it vanishes."""
        if rows <= 0:
            return {"on": True, "measured": False}  # resumed at the pilot's end: nothing timed here, kept
        done = float(prof.count.sum())
        _, grads, v = band(prof, self.goals, self.level)  # the schedule's gradients, once: the dear part
        v_plain = np.where(prof.count > 0, prof.plain_stderr**2 * prof.count, 0.0)
        if prof.control_sum is not None:
            v = np.where(prof.count > 0, row_variance(prof.sum, prof.sumsq, prof.count, prof.control_sum), 0.0)
        left = [max(_total(grads, u, prof.count, self.tolerance, self.level) - done, 0.0) for u in (v, v_plain)]
        per = [seconds / rows, max(seconds - control_seconds, 0.0) / rows]
        wall = [n * t for n, t in zip(left, per)]
        return {"on": bool(wall[0] <= wall[1]), "measured": True,
                "evaluations_left": {"with": round(left[0]), "without": round(left[1])},
                "ms_per_row": {"with": 1e3 * per[0], "without": 1e3 * per[1]},
                "seconds_left": {"with": wall[0], "without": wall[1]}}

    def state(self):
        return {"plan": self.plan, "rounds": np.array([[r["evaluations"], r["band"]] for r in self.records],
                                                      np.float64).reshape(-1, 2)}

    def restore(self, state, finished):
        """A checkpoint's plan and rounds, checked against the grid and its finished units."""
        plan, rounds, n = state["plan"], state["rounds"], self.plan.size
        if plan.dtype.kind not in "iu" or plan.shape != (n,) or plan.min() < 1:
            raise CheckpointMismatch(f"checkpoint has a plan of {plan.dtype} {plan.shape}, expected one unit count "
                                     ">= 1 per sigma; remove it to start afresh")
        if rounds.dtype != np.float64 or rounds.ndim != 2 or rounds.shape[1] != 2 or not np.all(np.isfinite(rounds)):
            raise CheckpointMismatch(f"checkpoint has rounds of {rounds.dtype} {rounds.shape}, expected finite "
                                     "float64 (rounds, 2); remove it to start afresh")
        fin = np.asarray(finished, np.int64)
        if np.any(fin // n >= plan[fin % n]):
            raise CheckpointMismatch("checkpoint lists work ids outside its plan; remove it to start afresh")
        self.plan = plan.astype(np.int64)
        self.records = [{"evaluations": int(e), "band": float(b)} for e, b in rounds]

    def meta(self):
        return {"samples": None, "adaptive": {**self.decisions(), "rounds": self.records,
                                              "plan_units": self.plan.tolist()}}


def _describe_prior(prior):
    """What a checkpoint and the profile's meta say of the prior: where it came from and its sums' size."""
    rec = prior.meta.get("recorded") or {}
    return {"recorded_steps": rec.get("steps"), "samples": float(prior.count.sum()), "mse_sum": float(prior.mse.sum())}


def prior_plan(prior, goals, level, units, floor=1):
    """The first plan of a run that starts from a ``prior`` profile (one recorded while training, say): the pilot's
    ``units`` in all, shared out as the prior's variances say (the minimax allocation, as each round's), at least
    ``floor`` per sigma. Only the shape is taken from the prior: its variances are those of other weights and of the
    plain mean (a run with control variates has smaller ones), so its total would mislead; the rounds that follow
    decide from this run's own sums, and the prior's are never mixed into the estimate."""
    _, grads, v = band(prior, goals, level)
    a = np.concatenate(grads) ** 2 * v
    weight = minimax_shape(a, np.ones(a.shape[1]))
    if not weight.sum() > 0:
        return np.full(a.shape[1], max(units // a.shape[1], floor), np.int64)
    share = np.floor(weight / weight.sum() * (units - floor * weight.size))
    return (floor + np.maximum(share, 0)).astype(np.int64)


def plan(samples, tolerance, steps, kind, *, max_evaluations, pilot, level, prior=None):
    """The plan of :func:`entropic_fast.profile`'s arguments: fixed (``samples``) or adaptive (``tolerance``)."""
    if samples is not None:
        if tolerance is not None or prior is not None:
            raise InputError("give samples= (a fixed count per sigma) or tolerance= (adaptive, perhaps from a prior), "
                             "not both")
        return estimate.FixedPlan(checks.integer(samples, "samples", 1))
    tolerance = TOLERANCE if tolerance is None else checks.real(tolerance, "tolerance", positive=True)
    level = checks.real(level, "level")
    if not (tolerance < 1 and 0 < level < 1):
        raise InputError(f"need 0 < tolerance < 1 and 0 < level < 1, got tolerance={tolerance}, level={level}")
    return AdaptivePlan(targets(steps, kind), tolerance, level, checks.integer(max_evaluations, "max_evaluations", 1),
                        checks.integer(pilot, "pilot", 2), prior=prior)


def warn_short(prof, plan):
    """Warn when an adaptive run stopped at its budget before its band met the tolerance."""
    reached = prof.provenance.adaptive["rounds"][-1]["band"]
    if reached > plan.tolerance:
        warnings.warn(f"adaptive profile stopped after {prof.meta['evaluations']} evaluations (max_evaluations="
                      f"{plan.max_evaluations}) with a {plan.level:.0%} band of +-{reached:.2%} (asked "
                      f"+-{plan.tolerance:.2%}); raise max_evaluations to go on", stacklevel=3)
