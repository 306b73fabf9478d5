"""``ef.compare``: which schedule samples *your* model best, with your sampler, at equal network evaluations.

A *cell* is (sampler, evaluation budget, kind): the sampler takes the most steps that fit the budget
(``samplers.steps_within``: Heun spends two per step, Euler on the last) on the kind's schedule (``kinds``: ours,
the classic ones and the peers users pick instead). Every cell starts sample ``i`` of seed ``s`` from the same
noise (common random numbers: the kinds' differences are not blurred by the noise), drawn per row from Philox
(:class:`RowNoise`, stochastic samplers' steps too), so a sample depends on (cell, seed, sample index) alone:
not on the batch it came in, the batch size or the number of ranks. The metric is the Frechet distance of
features (``features=``; the digits classifier's for 8x8 digits) to the reference's (data, or a statistics file
as FID tools write it), mean and spread over seeds; the matched floor is what as many real rows as a cell has
samples score against the reference (:func:`matched_floor`). Work is cut into units of ``CHUNK`` samples of one (cell, seed), shared among torch.distributed
ranks, checkpointed with their feature sums and resumed after SIGINT or SIGTERM, nothing counted twice.
"""
import dataclasses
import json
import os
import time
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
import torch
from tqdm.auto import tqdm

from . import checks, files, kinds, metrics, protocol, samplers
from .errors import InputError
from .estimate import distributed, pick_device
from .fingerprint import fingerprint
from .grids import sigma_grid
from .kernels import launchers
from .options import Checkpointing, Throughput
from .profile import Profile
from .runtime import Resumable
from .schedules import ends, schedule
from .units import stream_key

CHUNK = 64  # samples per unit of work
VERSION = 3  # 2: seeds are independent streams (units.stream_key); 3: the features fingerprinted, not named
DEFAULT_KINDS = ("rescaled", "entropic", "las", "edm", "exponential", "normal", "simple", "beta", "kl_optimal",
                 "ays-sdxl")


@dataclasses.dataclass(frozen=True)
class Cell:
    """One sampler at one budget of network evaluations with one kind of schedule."""
    sampler: str
    budget: int
    kind: str

    @property
    def steps(self):
        return samplers.steps_within(self.sampler, self.budget)

    @property
    def evaluations(self):
        return samplers.evaluations(self.sampler, self.steps)

    @property
    def name(self):
        return f"{self.sampler}_{self.evaluations}_{self.kind}"


class RowNoise:
    """Standard normal draws per row (Philox, keyed by the seed and the draw's count): a row's draws depend on its
    sample index alone. A ``generator`` for ``samplers`` (their stochastic steps call :meth:`normal`)."""

    def __init__(self, kern, key, rows):
        self.kern, self.key, self.rows, self.calls = kern, key, rows, 0

    def normal(self, like):
        self.calls += 1
        zeros = torch.zeros(like.shape, dtype=torch.float32, device=like.device)
        ones = torch.ones(like.shape[0], dtype=torch.float32, device=like.device)
        return self.kern.perturb(zeros, ones, stream_key(self.key, self.calls), self.rows)


# ---- the reference -------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Reference:
    """What samples are compared with: the features' mean and covariance, and the matched floor with its spread
    (where the reference is data)."""
    mu: torch.Tensor
    cov: torch.Tensor
    description: str
    rows: object = None  # the data (for the kinds that need the data's covariance)
    floor: float = None  # the matched floor: FD of as many real rows as a cell has samples, against the reference
    floor_rows: int = None
    floor_std: float = None  # its spread over FLOOR_DRAWS draws


def _features_of(rows, features, batch, device):
    out = []
    with torch.no_grad():
        for lo in range(0, rows.shape[0], batch):
            out.append(_checked_features(features(rows[lo:lo + batch].to(device)), "the reference").double().cpu())
    return torch.cat(out)


def reference_of(reference, features, shape, batch, device, samples):
    """A :class:`Reference` from data rows (tensor, array, dataset reader) or a statistics file's path."""
    if isinstance(reference, (str, os.PathLike)):
        if os.fspath(reference).endswith(".npz"):
            mu, cov = metrics.read_statistics(reference)
            return Reference(torch.as_tensor(mu), torch.as_tensor(cov), f"statistics file {os.fspath(reference)}")
        raise InputError(f"a reference path must be a statistics file (.npz with mu and sigma), got {reference!r}; "
                         "give data as a tensor or a dataset reader")
    data = reference if isinstance(reference, protocol.Data) else protocol.Data(reference)
    rows = data.source if data.is_tensor else data.draw(max(2 * samples, 2), torch.Generator().manual_seed(0))[0]
    if tuple(rows.shape[1:]) != tuple(shape):
        raise InputError(f"the reference's rows have shape {tuple(rows.shape[1:])}, the model's samples {tuple(shape)}")
    if rows.shape[0] < 2:
        raise InputError(f"the reference needs at least 2 rows (a covariance), got {rows.shape[0]}")
    f = _features_of(rows.float(), features, batch, device)
    mu, cov = f.mean(0), torch.cov(f.T).reshape(f.shape[1], -1)
    floor = matched_floor(f, mu, cov, samples)
    return Reference(mu, cov, f"{rows.shape[0]} rows of data", rows, *floor)


FLOOR_DRAWS = 20


def matched_floor(f, mu, cov, samples, draws=FLOOR_DRAWS):
    """``(mean, rows, std)`` of the Frechet distance between ``samples`` real rows (drawn without replacement
    where there are enough) and the reference's statistics, over ``draws`` draws: what a cell of perfect samples
    would score (a cell is ``samples`` samples against the whole reference, not half against half)."""
    n = f.shape[0]
    if n < 2 or samples < 2:
        return None, None, None
    g, to = torch.Generator().manual_seed(0), metrics.FrechetTo(mu, cov)
    values = []
    for _ in range(draws):
        idx = torch.randperm(n, generator=g)[:samples] if samples <= n else torch.randint(n, (samples,), generator=g)
        values.append(to(f[idx].mean(0), torch.cov(f[idx].T).reshape(f.shape[1], -1)))
    return float(np.mean(values)), int(samples), float(np.std(values))


def _checked_features(f, what):
    if not torch.is_tensor(f) or f.ndim != 2:
        raise InputError(f"features must return a (rows, width) tensor, got {getattr(f, 'shape', type(f).__name__)} "
                         f"for {what}")
    if not bool(torch.isfinite(f).all()):
        raise InputError(f"features returned non-finite values for {what}")
    return f


def default_features(shape, device):
    """The digits classifier's 128 features for 8x8 digits; anything else needs ``features=``."""
    if tuple(shape) != (1, 8, 8):
        raise InputError(f"give features= (a callable from a batch of samples to (rows, width) features): the built-in "
                         f"one is the digits classifier's, for samples of shape (1, 8, 8), got {tuple(shape)}")
    from . import digits
    return _DigitsFeatures(digits.classifier().to(device))


class _DigitsFeatures:
    """The shipped digits classifier's penultimate layer (128 features)."""
    description = "digits classifier features"

    def __init__(self, clf):
        self.clf = clf

    def __call__(self, x):
        return self.clf.features(x)


# ---- the result ----------------------------------------------------------------------------------------------

class Comparison:
    """Frechet distances per (cell, seed): the table (mean ± std over seeds, best per row in bold, the floor), its
    JSON, and the figure (distance against network evaluations, one line per kind, one panel per sampler)."""

    def __init__(self, cells, seeds, values, reference, meta, schedules=None):
        self.cells, self.seeds, self.values, self.reference, self.meta = cells, seeds, values, reference, meta
        self.schedules = {c: [float(v) for v in schedules[c]] for c in cells} if schedules else {}

    def distances(self, cell):
        return [self.values[(cell, s)] for s in self.seeds]

    def rows(self):
        """``[(sampler, budget, steps, evaluations, {kind: (mean, std)})]`` in the order asked."""
        out = {}
        for c in self.cells:
            v = self.distances(c)
            out.setdefault((c.sampler, c.budget, c.steps, c.evaluations), {})[c.kind] = (float(np.mean(v)),
                                                                                         float(np.std(v)))
        return [(*k, v) for k, v in out.items()]

    def same(self, row):
        """Whether every kind of a row ran the same schedule (Heun at 3 evaluations: [s_max, s_min, 0]): a row
        that compares nothing."""
        sampler, budget = row[0], row[1]
        sched = [tuple(self.schedules[c]) for c in self.cells if (c.sampler, c.budget) == (sampler, budget)] \
            if self.schedules else []
        return len(sched) > 1 and len(set(sched)) == 1

    def at_floor(self, cells):
        """Whether every cell of a row is within two spreads of the matched floor (the row tells kinds apart no
        better than the noise of the sample size)."""
        r = self.reference
        return r.floor is not None and all(m <= r.floor + 2 * (r.floor_std or 0.0) for m, _ in cells.values())

    def markdown(self):
        kinds_ = list(dict.fromkeys(c.kind for c in self.cells))
        r, rows = self.reference, self.rows()
        kept = [row for row in rows if not self.same(row)]
        left = [f"{row[0]} at {row[1]}" for row in rows if self.same(row)]
        spread = "" if len(self.seeds) < 2 else " ± std"
        lines = [f"Frechet distance of {self.meta['samples']} samples per cell to {r.description} "
                 f"({self.meta['features']}), mean{spread} over {len(self.seeds)} seed(s); best per row in bold. "
                 + (f"Matched floor ({r.floor_rows} real rows against the reference, {FLOOR_DRAWS} draws): "
                    f"{r.floor:.3f} ± {r.floor_std:.3f}; rows marked * are within two of its spreads in every cell. "
                    if r.floor is not None else "")
                 + "Rows compare samplers at equal network evaluations (Heun: 2 per step, Euler on the last)."
                 + (f" Left out, every kind giving the same schedule: {', '.join(left)}." if left else ""), "",
                 "| sampler | evaluations | steps | " + " | ".join(kinds_) + " |", "| --- " * (len(kinds_) + 3) + "|"]
        for sampler, _, steps, evals, cells in kept:
            means = [cells[k][0] for k in kinds_]
            text = [f"{m:.3f}" + (f" ± {cells[k][1]:.3f}" if spread else "") for m, k in zip(means, kinds_)]
            if len(set(means)) > 1:
                best = int(np.argmin(means))
                text[best] = f"**{text[best]}**"
            mark = " *" if self.at_floor(cells) else ""
            lines.append(f"| {sampler} | {evals} | {steps}{mark} | " + " | ".join(text) + " |")
        return "\n".join(lines) + "\n"

    def to_dict(self):
        return {"meta": self.meta, "floor": self.reference.floor, "floor_std": self.reference.floor_std,
                "floor_rows": self.reference.floor_rows, "reference": self.reference.description,
                "cells": [{"sampler": c.sampler, "budget": c.budget, "steps": c.steps, "evaluations": c.evaluations,
                           "kind": c.kind, "frechet": self.distances(c), "sigmas": self.schedules.get(c)}
                          for c in self.cells]}

    def figure(self, path):
        """Distance against network evaluations, one line per kind, one panel per sampler."""
        from .plots import compare_figure
        return compare_figure(self, path)

    def save(self, out):
        """Write ``compare.md``, ``compare.json`` and ``compare.png`` into the folder ``out``; returns their paths."""
        os.makedirs(out, exist_ok=True)
        paths = [os.path.join(out, f"compare.{e}") for e in ("md", "json", "png")]
        files.write_text(paths[0], self.markdown())
        files.write_text(paths[1], json.dumps(self.to_dict(), indent=1))
        self.figure(paths[2])
        return paths


# ---- the run -------------------------------------------------------------------------------------------------

def _png(img):
    """A PNG file's bytes of a uint8 image (H, W) or (H, W, 3): zlib-compressed rows, no dependency."""
    import struct
    import zlib
    h, w = img.shape[:2]
    colour = 2 if img.ndim == 3 else 0
    raw = b"".join(b"\x00" + img[r].tobytes() for r in range(h))

    def chunk(tag, body):
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)
    header = struct.pack(">II", w, h) + bytes([8, colour, 0, 0, 0])  # 8 bits; no compression, filter, interlace
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def _image(x):
    """A sample in [-1, 1] (C, H, W) with 1 or 3 channels as uint8 (H, W) or (H, W, 3)."""
    if x.ndim != 3 or x.shape[0] not in (1, 3):
        raise InputError(f"save_images writes samples of 1 or 3 channels (C, H, W), got shape {tuple(x.shape)}")
    a = ((x.double().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy()
    return a[0] if a.shape[0] == 1 else np.ascontiguousarray(a.transpose(1, 2, 0))


@dataclasses.dataclass(frozen=True)
class Job:
    """A comparison's checked inputs, built complete in one place (``_job``; ``tuning._job``) and frozen: the cells
    and seeds, their schedules, the model, where and how."""
    denoiser: object
    cells: list
    seeds: list
    samples: int
    schedules: dict
    shape: tuple
    dtype: torch.dtype
    device: torch.device
    features: object
    labels: object = None
    images: str = None
    dist: tuple = None
    checkpointing: Checkpointing = Checkpointing(seconds=300.0)  # its path this process's (per rank)
    throughput: Throughput = Throughput()

    @property
    def groups(self):
        return [(c, s) for c in self.cells for s in self.seeds]

    @property
    def chunks(self):
        return -(-self.samples // CHUNK)


class Run(Resumable):
    """The generation of every (cell, seed, sample) on the resumable runtime (``runtime``): units of ``CHUNK``
    samples packed into batches of one cell and seed, sampled, featurised into the pending moments, committed."""

    run_name = "comparison"

    def __init__(self, job, width):
        self.job, self.kern = job, launchers("auto", job.device)
        super().__init__(metrics.Moments(width, job.device, len(job.groups)), job.checkpointing,
                         job.dist or (0, 1), job.dist)

    def signature(self):
        """What the sums depend on (JSON, as a checkpoint holds it): computed once."""
        if not hasattr(self, "_signature"):
            self._signature = json.loads(json.dumps(self._describe()))
        return self._signature

    def _describe(self):
        j = self.job
        return {"version": VERSION, "cells": [dataclasses.astuple(c) for c in j.cells], "seeds": j.seeds,
                "samples": j.samples, "chunk": CHUNK, "shape": list(j.shape), "dtype": str(j.dtype),
                "schedules": {c.name: j.schedules[c].tolist() for c in j.cells},
                "model": fingerprint(j.denoiser)[0], "features": fingerprint(j.features)[0],
                "labels": None if j.labels is None else fingerprint(j.labels)[0],
                "share": list(j.dist or (0, 1))}

    # -- the runtime's questions: units, rows, counts

    def units(self):
        return len(self.job.groups) * self.job.chunks

    def unit_rows(self, ids):
        """Samples in each unit of ``ids`` (the last chunk of a group may be short)."""
        j = self.job
        return np.minimum(CHUNK, j.samples - (np.asarray(ids, np.int64) % j.chunks) * CHUNK)

    def counts(self, fin, arrays):
        """Samples per group in the arrays (finite features or not) and in the finished units."""
        j = self.job
        rows = np.bincount(fin // j.chunks, weights=self.unit_rows(fin), minlength=len(j.groups))
        return arrays["count"] + arrays["nonfinite"], rows, \
            lambda g: f"of {j.groups[g][0].name} (seed {j.groups[g][1]})"

    def batches(self):
        """This rank's unfinished units, packed up to ``batch_size`` rows of one group: ``((group, sample ids),
        unit ids)``."""
        j, done, (rank, world) = self.job, set(self.finished), self.share
        group, ids, rows = None, [], []
        for u in range(rank, self.units(), world):
            if u in done:
                continue
            g, c = divmod(u, j.chunks)
            r = np.arange(c * CHUNK, min((c + 1) * CHUNK, j.samples))
            if ids and (g != group or sum(map(len, rows)) + len(r) > j.throughput.batch_size):
                yield (group, np.concatenate(rows)), ids
                ids, rows = [], []
            group = g
            ids.append(u)
            rows.append(r)
        if ids:
            yield (group, np.concatenate(rows)), ids

    def rounds(self, bar):
        """One round: every unit."""
        self.loop(self.batches(), self.step, bar)

    def generate(self, group, rows):
        """The samples of sample ids ``rows`` in one group: its cell's sampler on its schedule from Philox noise."""
        j = self.job
        cell, seed = j.groups[group]
        sig = j.schedules[cell]
        rid = torch.from_numpy(rows).to(j.device)
        zeros = torch.zeros((len(rows), *j.shape), dtype=torch.float32, device=j.device)
        x = self.kern.perturb(zeros, torch.full((len(rows),), float(sig[0]), device=j.device), stream_key(seed, 0), rid)
        lab = None if j.labels is None else j.labels[torch.from_numpy(rows % j.labels.shape[0])].to(j.device)
        return samplers.SAMPLERS[cell.sampler](j.denoiser, x.to(j.dtype), sig, generator=RowNoise(self.kern, seed, rid),
                                               labels=lab)

    def step(self, work):
        """One batch ``(group, sample ids)``: generate, featurise, write images, into the pending moments."""
        (group, rows), j = work, self.job
        x = self.generate(group, rows)
        f = j.features(x.float())
        if not torch.is_tensor(f) or f.ndim != 2:
            _checked_features(f, f"the samples of {j.groups[group][0].name}")
        if f.shape[1] != self.acc.sum.shape[1]:
            raise InputError(f"features give {f.shape[1]} values per sample, the reference's statistics "
                             f"{self.acc.sum.shape[1]}")
        if j.images is not None:
            self.write_images(group, rows, x)
        self.pending.add(group, f)
        return len(rows)

    def write_images(self, group, rows, x):
        cell, seed = self.job.groups[group]
        folder = os.path.join(self.job.images, cell.name, f"seed{seed}")
        os.makedirs(folder, exist_ok=True)
        for i, row in zip(rows, x):
            files.write_bytes(os.path.join(folder, f"{i:06d}.png"), _png(_image(row)))

    def check_finite(self):
        """Refuse features that were not finite (a host sync: at checkpoints and at the end)."""
        bad = self.acc.nonfinite.cpu().numpy()
        if bad.any():
            g = int(np.flatnonzero(bad)[0])
            raise InputError(f"features returned non-finite values for {int(bad[g])} samples of "
                             f"{self.job.groups[g][0].name} (seed {self.job.groups[g][1]})")


def _describe(features):
    return getattr(features, "description", None) or getattr(features, "__qualname__", None) or type(features).__name__


# ---- the entry point -----------------------------------------------------------------------------------------

def _seeds(seeds):
    """A count (``range(n)``) or distinct whole seeds in ``[0, 2**63)``, checked."""
    if np.ndim(seeds) == 0:
        return list(range(checks.integer(seeds, "seeds", 1)))
    out = []
    for s in seeds:
        if isinstance(s, bool) or not float(s).is_integer() or not 0 <= int(s) < 2**63:
            raise InputError(f"seeds must be whole numbers in [0, 2**63), got {s!r}")
        out.append(int(s))
    if not out or len(set(out)) != len(out):
        raise InputError(f"seeds must be one or more distinct values, got {list(seeds)!r}")
    return out


def _check_out(out, save_images):
    """The output folder, checked before the first network call (a run never samples everything, then fails)."""
    if checks.flag(save_images, "save_images") and out is None:
        raise InputError("save_images=True needs out= (the folder the images go to)")
    if out is None:
        return
    out = os.path.abspath(checks.path(out, "out"))
    if os.path.exists(out) and not os.path.isdir(out):
        raise InputError(f"out {out} is a file, not a folder")
    have = out
    while not os.path.exists(have):  # the folders save() would make: the nearest existing one must take files
        have = os.path.dirname(have)
    if not os.path.isdir(have):
        raise InputError(f"out {out}: {have} is a file, not a folder")
    files.check_writable(os.path.join(have, "compare.md"), "out")


def _cells(kinds_, steps, samplers_):
    """Every (sampler, budget, kind), checked: known names, budgets of at least 2 evaluations."""
    if kinds_ is None or samplers_ is None:
        raise InputError("compare needs kinds and samplers (names, or lists of names), got None")
    kinds_ = [kinds_] if isinstance(kinds_, str) else list(kinds_)
    samplers_ = [samplers_] if isinstance(samplers_, str) else list(samplers_)
    for what, names in (("kinds", kinds_), ("samplers", samplers_)):
        if len(set(map(str, names))) != len(names):
            raise InputError(f"{what} repeats a name: {names}")
    budgets = [checks.integer(s, "steps", 2) for s in ([steps] if np.ndim(steps) == 0 else steps)]
    for k in kinds_:
        kinds.get(k)
    samplers_ = [samplers.get(s).name for s in samplers_]
    if not (kinds_ and samplers_ and budgets):
        raise InputError("compare needs at least one kind, one sampler and one budget (steps)")
    return [Cell(s, b, k) for s in samplers_ for b in budgets for k in kinds_]


def _schedules(cells, prof, ref, device, same_ends=False, range_only=False):
    """Each cell's sigmas (ours choose their interval for the cell's sampler and budget; with ``same_ends`` every
    kind runs on that interval, the control that separates the interval from the spacing); a kind that needs
    more than the profile or the reference holds is refused by name."""
    out = {}
    for c in cells:
        entry = kinds.get(c.kind)
        if range_only and entry.needs != "range":
            ranged = [k.name for k in kinds.TABLE if k.needs == "range"]
            raise InputError(f"kind {c.kind!r} needs the model's profile (profile=...); without one only the kinds "
                             f"of a range: {', '.join(ranged)}")
        opts = {"data": ref.rows.reshape(ref.rows.shape[0], -1)} if entry.needs == "covariance" and \
            ref.rows is not None else {}
        if same_ends:
            opts["interval"] = ends(prof, c.steps, samplers.get(c.sampler).kind, sampler=c.sampler)
        try:
            out[c] = torch.as_tensor(schedule(prof, c.steps, c.kind, sampler=c.sampler, **opts), dtype=torch.float64,
                                     device=device)
        except InputError as e:
            raise InputError(f"kind {c.kind!r} for {c.sampler} at {c.steps} steps: {e}") from None
    return out


def _range_profile(prof, shape, sigma_min, sigma_max):
    """``(profile, range_only)``: the profile the schedules come from, the one given (or loaded); else a flat curve
    on the range, which only the kinds of a range can use (``needs == "range"``: the classic ones and the peers)."""
    if prof is None:
        grid = sigma_grid(32, sigma_min, sigma_max)
        return Profile.from_curve(grid, np.ones_like(grid), int(np.prod(shape))), True
    return (Profile.load(prof) if isinstance(prof, (str, os.PathLike)) else prof), False


def compare(denoiser: Callable, reference: Any, *, profile: Union[Profile, str, None] = None,
            kinds: Sequence[str] = DEFAULT_KINDS, steps: Sequence[int] = (8, 16, 32),
            samplers: Sequence[str] = ("ddim", "heun"), samples: int = 10000, seeds: Union[int, Sequence[int]] = 1,
            features: Optional[Callable] = None, labels: Any = None, shape: Optional[Sequence[int]] = None,
            out: Optional[str] = None, checkpoint: Optional[str] = None, save_images: bool = False,
            batch_size: int = 256, device: Union[str, torch.device, None] = None, sigma_min: float = 0.002,
            sigma_max: float = 80.0, progress: bool = True, same_ends: bool = False) -> "Comparison":
    """Frechet distance of ``denoiser``'s samples to ``reference`` for every (sampler, budget, kind), at equal
    network evaluations (this module's documentation says how). Our kinds choose their interval
    (``entropic_fast.interval``), the others run on the profile's range (the model's, as in clients).

    Parameters
    ----------
    denoiser : callable
        ``denoiser(x, sigma[, labels]) -> x0_hat``, as for ``ef.profile``.
    reference : tensor, array, reader or str
        Data rows (a tensor, array or ``ef.data`` reader), or a statistics file (``.npz`` with ``mu``, ``sigma``).
    profile : Profile or str, optional
        The model's profile or its file; without one, only the kinds of a range, on ``[sigma_min, sigma_max]``.
    kinds, steps, samplers : sequences
        The schedule kinds (``ef.KINDS``), network-evaluation budgets, samplers (``ef.samplers.NAMES``) compared.
    samples, seeds : int, int or sequence of int
        Samples per cell and seed; how many seeds, or which (independent noise, the same for every kind).
    features : callable, optional
        Samples to ``(rows, width)`` features (default the digits classifier's, for 8x8 digits).
    labels, shape : optional
        Class labels (sample ``i`` takes ``labels[i % len]``); one sample's shape (default the reference's).
    out, save_images : str, bool
        A folder for the table, JSON and figure (checked writable first); PNG folders per cell and seed there.
    checkpoint, batch_size, device, progress
        A file to save to and resume from; samples per network call; where the network runs; a progress bar.
    same_ends : bool
        Every kind on our interval for the cell: the control that tells the interval's share from the spacing's.

    Returns
    -------
    Comparison
        The table (mean and spread over seeds, the matched floor), its JSON and figure.
    """
    job, ref, width = _job(denoiser, reference, profile, kinds_=kinds, steps=steps, samplers_=samplers,
                           samples=samples, seeds=seeds, features=features, labels=labels, shape=shape, out=out,
                           save_images=save_images, sigma_min=sigma_min, sigma_max=sigma_max,
                           same_ends=checks.flag(same_ends, "same_ends"), throughput=Throughput(batch_size, device),
                           checkpointing=Checkpointing(checkpoint, seconds=300.0))
    result = _measured(job, ref, width, progress)
    if out is not None and (job.dist is None or job.dist[0] == 0):
        result.save(out)
    return result


def distances(job, ref, width, progress, what):
    """``(Frechet distance per group, network evaluations)`` of a checked job: every unit run (resumably) under a
    progress bar named ``what``, which says the cost up front. Shared by ``compare`` and ``tune``."""
    evals = sum(c.evaluations for c in job.cells) * len(job.seeds) * job.samples
    bar = tqdm(total=len(job.groups) * job.samples, desc=what, unit="sample", disable=not progress, leave=False)
    if progress:
        bar.write(f"{what}: {len(job.cells)} cells x {len(job.seeds)} seed(s) x {job.samples} samples; network "
                  f"evaluations per sample {sorted({c.evaluations for c in job.cells})}, {evals:,} in all")
    def resumed(done):  # the bar, showing the samples a checkpoint already holds
        bar.update(done)
        return bar
    try:
        moments = Run(job, width).execute(resumed)
    finally:
        bar.close()
    to = metrics.FrechetTo(ref.mu, ref.cov)
    return [to(*moments.mean_cov(g)) for g in range(len(job.groups))], evals


def _measured(job, ref, width, progress):
    """The :class:`Comparison` of a checked job: its cost said up front, every unit run (resumably), the distances."""
    t0 = time.monotonic()
    fd, evals = distances(job, ref, width, progress, "compare")
    values = dict(zip(job.groups, fd))
    meta = {"samples": job.samples, "seeds": job.seeds, "features": _describe(job.features),
            "evaluations": evals, "seconds": round(time.monotonic() - t0, 1), "shape": list(job.shape)}
    return Comparison(job.cells, job.seeds, values, ref, meta, {c: v.tolist() for c, v in job.schedules.items()})


def reference_for(denoiser, reference, features, *, shape, throughput, samples):
    """``(device, shape, features, Reference)``: what a run compares its samples with, checked (shared with
    ``tuning``): the reference read once, the device the model's, the shape the reference's unless given."""
    data = None if isinstance(reference, (str, os.PathLike)) else protocol.Data(reference)  # read once
    device = pick_device(denoiser, data or protocol.Data(torch.zeros(1, 1)), throughput.device)
    if shape is None:
        if data is None:
            raise InputError("give shape= (one sample's shape): a statistics file does not say it")
        shape = tuple(data.example.shape[1:])
    shape = tuple(checks.integer(v, "shape", 1) for v in shape)
    features = default_features(shape, device) if features is None else features
    if not callable(features):
        raise InputError(f"features must be a callable from samples to (rows, width) features, got {features!r}")
    ref = reference_of(data if data is not None else reference, features, shape, throughput.batch_size, device,
                       samples)
    return device, shape, features, ref


def _labels(denoiser, labels):
    """Class labels as a tensor of one or more finite values, for a denoiser that takes them (or None)."""
    if labels is None:
        return None
    try:
        labels = torch.as_tensor(labels)
    except (TypeError, ValueError, RuntimeError):
        raise InputError(f"labels must be an array of class labels, got {type(labels).__name__}") from None
    if labels.ndim < 1 or labels.shape[0] == 0 or labels.is_complex() or labels.dtype == torch.bool:
        raise InputError(f"labels must hold one or more real class labels, got {labels.dtype} "
                         f"{tuple(labels.shape)}")
    if labels.dtype.is_floating_point and not bool(torch.isfinite(labels).all()):
        raise InputError(f"labels must be finite, got {int((~torch.isfinite(labels)).sum())} non-finite of "
                         f"{labels.numel()}")
    protocol._check_takes_labels(denoiser)
    return labels


def _job(denoiser, reference, profile, *, kinds_, steps, samplers_, samples, seeds, features, labels, shape, out,
         save_images, sigma_min, sigma_max, same_ends=False, throughput=Throughput(),
         checkpointing=Checkpointing(seconds=300.0)):
    """The checked :class:`Job`, the :class:`Reference` and the features' width."""
    cells = _cells(kinds_, steps, samplers_)
    samples = checks.integer(samples, "samples", 2)
    seeds = _seeds(seeds)
    _check_out(out, save_images)
    device, shape, features, ref = reference_for(denoiser, reference, features, shape=shape, throughput=throughput,
                                                 samples=samples)
    prof, range_only = _range_profile(profile, shape, sigma_min, sigma_max)
    if prof.dim != int(np.prod(shape)):
        raise InputError(f"the profile is of data of dimension {prof.dim}, the samples' shape {tuple(shape)} has "
                         f"{int(np.prod(shape))}: a profile of another model?")
    dtype = protocol.declared_dtype(denoiser) or torch.float32
    labels = _labels(denoiser, labels)
    dist = distributed()
    job = Job(denoiser, cells, seeds, samples, _schedules(cells, prof, ref, device, same_ends, range_only), shape,
              dtype=dtype, device=device, features=features, labels=labels,
              images=None if not (save_images and out) else os.path.join(out, "images"), dist=dist,
              checkpointing=checkpointing.for_process(dist), throughput=throughput)
    return job, ref, ref.mu.numel()
