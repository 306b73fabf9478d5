"""``ef.tune``: where the interval rule is not enough, search the interval (then the spacing) on the model itself.

For one sampler, budget and kind, the candidates are the rule's interval (``interval``) scaled by
``FACTORS`` at each end (a 5 x 5 grid, within the bounds); each is a cell of ``ef.compare``'s run (the same
resumable, batch- and rank-independent generation), scored by the Frechet distance of ``samples`` samples'
features to the reference, from noise seeds ``SEED_BASE`` and up, which no comparison draws by default (a tuned
interval is not scored on the noise that chose it). The winner is written into the profile's meta (``tuned``),
which ``ef.schedule`` and every client read from the profile file: the tuned interval replaces the rule's for that
sampler, budget and kind, within the caller's bounds. Then the spacings of ``SPACINGS`` are scored on the best
interval with the same noise, and the best of them and ``kind`` spaces that schedule (on the digits transformer,
DPM++(2M) samples better with Karras' spacing on our interval; on the digits UNet with ours). Measured proxies:
the distance to the exact ODE result from the same noise favours blur (it made the Frechet distance worse on
digits), so the score is the Frechet distance itself, on whatever features the user has; with 1,024 samples per
candidate it picks, held out, within 0.34 of the best candidate on both shipped models
(``benchmarks/results/tuning_gain.md``).
"""
import dataclasses
import os
import time
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
import torch
from tqdm.auto import tqdm

from . import checks, kinds, protocol, samplers
from .comparison import Cell, Job, distances, reference_for
from .options import Checkpointing, Throughput
from .profile import Profile
from .schedules import ends, schedule, tuned_key

FACTORS = (0.5, 0.71, 1.0, 1.41, 2.0)  # each end of the rule's interval scaled by these
SPACINGS = ("edm", "exponential")  # scored on the best interval: Karras' (rho 7) and equal steps in log sigma
SEED_BASE = 1_000_000  # tuning's noise seeds: far from compare's 0, 1, 2, ...


@dataclasses.dataclass(frozen=True)
class Tuned:
    """The search's result: every candidate's ``(sigma_min, sigma_max, frechet)``, the best, the rule's, the
    spacings' scores on the best, and the profile with the best written into its meta (``profile.save(path)`` for
    the clients)."""
    candidates: list
    best: tuple
    rule: tuple
    profile: Profile
    meta: dict
    spacings: tuple = ()  # (spacing, score) on the best interval, the tuned kind's first

    def markdown(self):
        lines = [f"Tuning {self.meta['key']}: Frechet distance of {self.meta['samples']} samples x "
                 f"{self.meta['seeds']} seed(s), {self.meta['evaluations']:,} network evaluations in "
                 f"{self.meta['seconds']:.0f} s.", "", "| sigma_min | sigma_max | Frechet | |", "| --- | --- | --- | --- |"]
        for a, b, fd in sorted(self.candidates, key=lambda c: c[2]):
            mark = "best" if (a, b) == self.best[:2] else ("the rule's" if (a, b) == self.rule[:2] else "")
            lines.append(f"| {a:.4g} | {b:.4g} | {fd:.3f} | {mark} |")
        if len(self.spacings) > 1:
            lines += ["", "Spacings on the best interval: " + ", ".join(
                f"{k} {fd:.3f}" + (" (best)" if k == self.meta["spacing"] else "") for k, fd in self.spacings)]
        return "\n".join(lines) + "\n"


def candidates(prof, steps, kind, sampler, sigma_min=None, sigma_max=None):
    """The rule's interval and the grid around it, within the bounds: ``[(sigma_min, sigma_max)]``, the rule first."""
    rule = ends(prof, steps, kind, sigma_min, sigma_max, sampler=sampler, interval="auto")
    lo, hi = ends(prof, steps, kind, sigma_min, sigma_max, interval="range")
    out = [rule]
    for fa in FACTORS:
        for fb in FACTORS:
            a, b = min(max(rule[0] * fa, lo), hi), min(max(rule[1] * fb, lo), hi)
            if b > 1.5 * a and (a, b) not in out:
                out.append((a, b))
    return out


def tune(denoiser: Callable, reference: Any, profile: Union[Profile, str], sampler: str = "ddim", steps: int = 8, *,
         kind: Optional[str] = None, samples: int = 1024, seeds: int = 1, features: Optional[Callable] = None,
         labels: Any = None, checkpoint: Optional[str] = None, batch_size: int = 256,
         device: Union[str, torch.device, None] = None, sigma_min: Optional[float] = None,
         sigma_max: Optional[float] = None, spacings: Sequence[str] = SPACINGS, progress: bool = True) -> Tuned:
    """Search the interval of ``kind`` (default the sampler's) for ``sampler`` at ``steps`` network evaluations on
    ``denoiser``, scored by the Frechet distance of features to ``reference`` (data rows or a dataset
    reader; ``features`` as in ``ef.compare``, default the digits classifier's for 8x8 digits); the cost
    is printed before the run; ``checkpoint`` resumes an interrupted search.

    Parameters
    ----------
    denoiser : callable
        ``denoiser(x, sigma[, labels]) -> x0_hat``, as for ``ef.profile``.
    reference : tensor, array or reader
        Data rows the samples are scored against.
    profile : Profile or str
        The model's profile (or its file): the rule's interval and the schedules.
    sampler : str
        The sampler the interval is for (``ef.samplers.NAMES``).
    steps : int
        Network evaluations.
    kind : str, optional
        The spacing (default the sampler's, ``samplers.TABLE``).
    samples, seeds : int
        Samples per candidate and seed; seeds (noise the evaluation tables never use). Fewer than about 1,000
        samples can rank the candidates wrongly: the Frechet distance of a small sample is biased by an amount
        that differs between candidates (``benchmarks/results/tuning_gain.md``).
    features, labels : optional
        As for ``ef.compare`` (features default to the digits classifier's, for 8x8 digits).
    checkpoint, batch_size, device, progress
        A file to save to and resume from; samples per network call; where the network runs; a progress bar.
    sigma_min, sigma_max : float, optional
        Bounds of the search (default the profile's range).
    spacings : sequence of str
        Kinds scored on the best interval after the search (default Karras' and equal steps in log sigma; ``()``
        searches the interval alone); the best of them and ``kind`` is written with the interval, and
        ``ef.schedule`` spaces ``kind``'s tuned schedule with it.

    Returns
    -------
    Tuned
        Every candidate's score, the best, the rule's, the spacings' scores, and the profile carrying the best
        interval and spacing for the schedule and the clients (``profile.save(path)``)."""
    prof = Profile.load(profile) if isinstance(profile, (str, os.PathLike)) else profile
    spec = samplers.get(sampler)
    kind = kinds.get(spec.kind if kind is None else kind).name
    budget = checks.integer(steps, "steps", 2)
    n = samplers.steps_within(spec.name, budget)
    pairs = candidates(prof, n, kind, spec.name, sigma_min, sigma_max)
    cells = [Cell(spec.name, budget, f"{kind}[{a:.6g},{b:.6g}]") for a, b in pairs]
    job, ref = _job(denoiser, reference, prof, dict(zip(cells, pairs)), kind=kind, steps=n, samples=samples,
                    seeds=seeds, features=features, labels=labels,
                    checkpointing=Checkpointing(checkpoint, seconds=300.0), throughput=Throughput(batch_size, device))
    spacings = _checked_spacings(prof, n, kind, spec.name, spacings, pairs[0])
    return _search(job, ref, prof, dict(zip(cells, pairs)), kind=kind, steps=n, spacings=spacings,
                   checkpoint=checkpoint, progress=progress)


def _search(job, ref, prof, intervals, *, kind, steps, spacings, checkpoint, progress):
    """The :class:`Tuned` of a checked search: the candidate ``intervals`` (``{cell: (lo, hi)}``, the rule's
    first) scored, then the ``spacings`` on the best, the cost said up front."""
    cells, pairs = list(intervals), list(intervals.values())
    if progress:
        tqdm.write(f"tune: {len(pairs)} intervals of {kind}, then {len(spacings)} other spacing(s) on the best, "
                   f"{(len(pairs) + len(spacings)) * job.samples * len(job.seeds) * cells[0].evaluations:,} network "
                   "evaluations")
    t0 = time.monotonic()
    fd, evals = _scores(job, ref, cells, progress)
    scored = [(a, b, f) for (a, b), f in zip(pairs, fd)]
    best = min(scored, key=lambda c: c[2])
    spaced, more = _spacings(job, ref, prof, best, spacings, steps=steps, progress=progress,
                             checkpointing=Checkpointing(None if checkpoint is None else f"{checkpoint}.spacing",
                                                         seconds=300.0))
    spaced = [(kind, best[2]), *spaced]  # the same noise and samples: the scores compare pairwise
    meta = {"key": tuned_key(cells[0].sampler, steps, kind), "interval": [best[0], best[1]], "rule": list(pairs[0]),
            "rule_frechet": scored[0][2], **_best_spacing(spaced), "samples": job.samples, "seeds": len(job.seeds),
            "evaluations": evals + more, "seconds": round(time.monotonic() - t0, 1),
            "features": getattr(job.features, "description", None)}
    tuned = {**prof.meta.get("tuned", {}), meta["key"]: meta}
    return Tuned(scored, best, scored[0], prof.with_meta(tuned=tuned), meta, spaced)


def _checked_spacings(prof, steps, kind, sampler, names, interval):
    """The spacings to score besides ``kind`` (known names, once each), each built once on ``interval`` so that
    one that cannot be (spectral on a plain profile) is refused before the search."""
    names = [k for k in dict.fromkeys(kinds.get(k).name for k in names) if k != kind]
    for k in names:
        schedule(prof, steps, k, sampler=sampler, interval=interval)
    return names


def _best_spacing(spaced):
    """The record of the spacings' scores: the best one, its score, every score."""
    name, fd = min(spaced, key=lambda c: c[1])
    return {"spacing": name, "frechet": fd, "spacings": dict(spaced)}


def _spacings(job, ref, prof, best, names, *, steps, progress, checkpointing):
    """``([(spacing, score)], network evaluations)``: each spacing of ``names`` on the best interval, scored on
    the interval search's noise and samples (its own checkpoint, ``PATH.spacing``)."""
    if not names:
        return [], 0
    sampler, budget = job.cells[0].sampler, job.cells[0].budget
    cells = [Cell(sampler, budget, f"{k}[{best[0]:.6g},{best[1]:.6g}]") for k in names]
    sched = {c: torch.as_tensor(schedule(prof, steps, k, sampler=sampler, interval=best[:2]), dtype=torch.float64,
                                device=job.device) for c, k in zip(cells, names)}
    job = dataclasses.replace(job, cells=cells, schedules=sched, checkpointing=checkpointing.for_process())
    fd, evals = _scores(job, ref, cells, progress)
    return list(zip(names, fd)), evals


def _scores(job, ref, cells, progress):
    """``(Frechet distance of each candidate, mean over seeds; network evaluations)``, the cost said up front."""
    fd, evals = distances(job, ref, ref.mu.numel(), progress, "tune")
    return [float(np.mean([f for (c, _), f in zip(job.groups, fd) if c == cell])) for cell in cells], evals


def _job(denoiser, reference, prof, intervals, *, kind, steps, samples, seeds, features, labels, checkpointing,
         throughput):
    """The comparison job of the candidates (``{cell: interval}``, their schedules made here) and the reference's
    statistics."""
    samples = checks.integer(samples, "samples", 2)
    seeds = checks.integer(seeds, "seeds", 1)
    device, shape, features, ref = reference_for(denoiser, reference, features, shape=None, throughput=throughput,
                                                 samples=samples)
    sched = {c: torch.as_tensor(schedule(prof, steps, kind, sampler=c.sampler, interval=ab), dtype=torch.float64,
                                device=device) for c, ab in intervals.items()}
    job = Job(denoiser, list(intervals), [SEED_BASE + s for s in range(seeds)], samples, sched, shape,
              dtype=protocol.declared_dtype(denoiser) or torch.float32, device=device, features=features,
              labels=None if labels is None else torch.as_tensor(labels), checkpointing=checkpointing.for_process(),
              throughput=throughput)
    return job, ref
