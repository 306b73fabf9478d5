"""The Monte-Carlo run: per-sigma denoising error of a denoiser on data (docs/design.md section 1), as an object.

A :class:`Run` asks its *plan* what to compute next (:class:`FixedPlan` here: every sigma ``samples`` times;
``adaptive.AdaptivePlan``: rounds decided from the bands), packs the plan's work units into batches
(``batches``), computes each batch into scratch accumulators (``sums``) and commits it whole; a unit's rows
are committed together with its id, inside a critical section that signals cannot split, so a checkpoint
written at any moment holds exactly the finished units. The profile depends neither on ``batch_size`` nor on
the backend nor on how the units are shared out (``units``). Accumulators stay on the device in float64 and
the loop never waits on the device, except to write a checkpoint and, every ``runtime.CHECK_SECONDS``, to look for
non-finite outputs. The inputs are read through ``protocol``; checkpoints are ``checkpoint``'s.
"""
import dataclasses
import os
import time
import warnings

import numpy as np
import torch
from tqdm.auto import tqdm

from . import checkpoint as ckpt
from . import checks, control, protocol, sums
from .batches import Limit, drawn, on_device, packed, prefetched
from .checkpoint import CheckpointMismatch  # noqa: F401  (re-exported: the error users catch)
from .costs import Stopwatch
from .errors import InputError
from .fingerprint import fingerprint
from .kernels import launchers
from .kernels.mixture import importance
from .options import Checkpointing, Throughput
from .profile import Profile
from .runtime import Resumable
from .units import UNIT, n_units, noise_key, shard_rows, unit_rows, work_units

# ---- plans: what the run computes next ---------------------------------------------------------------------

class FixedPlan:
    """``samples`` per sigma, in one round. A plan tells the run its units, their rows, and whether it is done
    after a round; ``adaptive.AdaptivePlan`` is the other implementation."""

    def __init__(self, samples):
        self.samples = samples  # the work-id space: no sigma holds more

    def signature(self):
        """What the plan adds to the run's signature (checked on resume)."""
        return {}

    def start(self, n):
        self.n = n

    def units(self, shard, finished):
        return work_units(self.n, self.samples, shard, finished)

    def rows(self, shard):
        return shard_rows(self.n, self.samples, shard)

    def next(self, so_far):
        """True: done after one round (``so_far``, the profile so far, is not needed)."""
        return True

    def state(self):
        """The plan's arrays in a checkpoint."""
        return {}

    def restore(self, state, finished):
        pass

    def meta(self):
        return {"samples": self.samples}


# ---- the inputs of a run, checked ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Job:
    """What a run computes, every argument checked, built complete in one place (:func:`job`): the denoiser as the
    loop calls it, the data, the grid, where and how (device, dtypes, launchers, noise key), with which controls,
    in which share, checkpointed where (its option groups, ``options``)."""
    denoiser: object
    network: object
    data: protocol.Data
    grid: np.ndarray
    device: torch.device
    dtype: torch.dtype
    net_dtype: torch.dtype
    kern: object
    seed: int
    mixture: tuple = None
    controls: tuple = ()
    control_request: object = None  # what the caller asked for ("auto" lets an adaptive run's pilot decide)
    image: tuple = None
    shard: tuple = (0, 1)
    dist: tuple = None
    nonfinite: str = "raise"
    checkpointing: Checkpointing = Checkpointing()  # its path this process's (per rank)
    throughput: Throughput = Throughput()

    @property
    def key(self):
        return noise_key(self.seed)


def pick_device(denoiser, data, device):
    """The run's device: the one asked for, else the denoiser's, else the data tensor's, else the CPU."""
    if device is not None:
        try:
            device = torch.device(device)
        except (RuntimeError, TypeError):
            raise InputError(f"device must be a torch device such as 'cpu' or 'cuda:0', got {device!r}") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise InputError(f"device {device} was asked for, but CUDA is not available on this machine")
        return device
    declared = protocol.declared_device(denoiser)
    if declared is not None:
        return declared
    return data.source.device if data.is_tensor else torch.device("cpu")


def _image_shape(shape):
    """(C, H, W) of image-shaped data for the spectral accumulator."""
    if len(shape) == 2:
        return (1, *shape)
    if len(shape) == 3:
        return tuple(shape)
    raise InputError(f"spectral=True needs image data of shape (H, W) or (C, H, W) per row, got {tuple(shape)}")


def _check_range(grid, example, net_dtype):
    """Refuse sigmas whose noisy inputs overflow the network's dtype (blame the grid, not the denoiser)."""
    top = float(torch.finfo(net_dtype).max)
    peak = float(grid[-1]) * 8.0 + float(example.abs().max())  # 8 sd of noise: never reached in practice
    if not peak < top:
        raise InputError(f"sigma={grid[-1]:.6g} makes noisy inputs of about {peak:.3g}, beyond the largest "
                         f"{str(net_dtype).replace('torch.', '')} ({top:.3g}): lower the top of the grid")


def _warn_outside(grid, denoiser):
    """Warn when the grid leaves the sigma range the denoiser declares (beyond it a VP model's timestep clamps: the
    profile there measures the clamped model, not the model)."""
    declared = protocol.declared_range(denoiser)
    if declared is None:
        return
    lo, hi = declared
    if grid[0] < lo * (1 - 0.02) or grid[-1] > hi * (1 + 0.02):
        warnings.warn(f"the grid spans sigma {grid[0]:.4g} .. {grid[-1]:.4g}, but {protocol.describe(denoiser)} is "
                      f"defined on [{lo:.4g}, {hi:.4g}]: outside it the model's timestep clamps, and the profile there "
                      f"measures the clamped model. Profile over ef.sigma_grid(n, {lo:.4g}, {hi:.4g})", stacklevel=4)


def distributed():
    """``(rank, world size)`` of an initialised torch.distributed group, else None."""
    d = torch.distributed
    if d.is_available() and d.is_initialized() and d.get_world_size() > 1:
        return d.get_rank(), d.get_world_size()
    return None


def _check_shard(shard, dist):
    if dist is not None and shard is not None:
        raise InputError("shard= and a torch.distributed group both split the work: use one of them")
    if dist is not None:
        return dist
    if shard is None:
        return (0, 1)
    try:
        index, count = shard
    except (TypeError, ValueError):
        raise InputError(f"shard must be (index, count) with 0 <= index < count, got {shard!r}") from None
    index, count = checks.integer(index, "shard index"), checks.integer(count, "shard count")
    if not 0 <= index < count:
        raise InputError(f"shard must be (index, count) with 0 <= index < count, got {shard!r}")
    return index, count


def _paths(denoiser, data, spectral, control_request, device, grid):
    """``(mixture, controls)``: the fused mixture path (an analytic mixture, unlabelled, not spectral, without
    controls) or the network's, with the controls that fit."""
    mixture = protocol.mixture(denoiser) if not data.labelled and not spectral else None
    example = data.example.to(device)
    controls = control.fitted([c.to(device) if hasattr(c, "to") else c
                               for c in control.choose(control_request, data, mixture is not None)],
                              data, example, grid, control_request)
    if mixture is None or controls:  # the fused path gives no per-row errors to pair with controls
        return None, tuple(controls)
    return tuple(t.to(device) for t in mixture), ()


def job(denoiser, data, grid, *, seed=0, spectral=False, nonfinite="raise", shard=None, labels_kwarg=None,
        control="auto", throughput=Throughput(), checkpointing=Checkpointing()):
    """A :class:`Job` from :func:`entropic_fast.profile`'s arguments (``data`` a ``protocol.Data``), each checked."""
    checks.one_of(nonfinite, "nonfinite", ("raise", "skip"))
    spectral, dist = checks.flag(spectral, "spectral"), distributed()
    shard = _check_shard(shard, dist)
    protocol.check_labelling(denoiser, data, labels_kwarg)
    device = pick_device(denoiser, data, throughput.device)
    kern = launchers(throughput.backend, device)
    dtype = torch.float64 if data.example.dtype == torch.float64 else torch.float32
    net_dtype = protocol.declared_dtype(denoiser) or dtype
    _check_range(grid, data.example, net_dtype)
    _warn_outside(grid, denoiser)
    checkpointing = checkpointing.for_process(shard if dist is not None else None)
    mixture, controls = _paths(denoiser, data, spectral, control, device, grid)
    network = protocol.network(denoiser, throughput.compile, throughput.channels_last and data.example.dim() == 4,
                               labels_kwarg)
    return Job(denoiser, network, data, grid, device=device, dtype=dtype, net_dtype=net_dtype, kern=kern,
               seed=checks.seed(seed), mixture=mixture, controls=controls, control_request=control,
               image=_image_shape(data.example.shape[1:]) if spectral else None, shard=shard, dist=dist,
               nonfinite=nonfinite, checkpointing=checkpointing, throughput=throughput)


def progress_bar(progress, total, done, quiet):
    """A tqdm bar (``progress`` true or false), or the caller's own object with ``update(rows)``."""
    if isinstance(progress, (bool, np.bool_)):
        return tqdm(total=total, initial=done, desc="profile", unit="sample", leave=False,
                    disable=not progress or quiet)
    if isinstance(progress, dict) or not callable(getattr(progress, "update", None)):
        raise InputError(f"progress must be True, False or an object with an update(rows) method, got {progress!r}")
    if done:
        progress.update(done)
    return progress


def _is_oom(e):
    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", ())
    return isinstance(e, oom)


# ---- the run ------------------------------------------------------------------------------------------------

class Run(Resumable):
    """One Monte-Carlo run of a :class:`Job` under a plan on the resumable runtime (``runtime``): batches computed
    into the pending sums, checked for non-finite output, the plan's rounds, the Profile; one step per method."""

    run_name = "profile run"

    def __init__(self, job, plan):
        self.job, self.plan = job, plan
        plan.start(job.grid.size)
        super().__init__(sums.Sums(job.grid.size, job.device, len(control.names(job.controls)), job.image),
                         job.checkpointing, job.shard, job.dist)
        self.scratch = self.sums.like()  # the batch, before it is known to have succeeded
        self.limit = Limit(job.throughput.batch_size)
        self.grid = torch.as_tensor(job.grid, dtype=job.dtype, device=job.device)
        self.watch, self.decision = Stopwatch(job.device), None  # the pilot's costs; "auto"'s decision on controls
        self.called = False  # the network has returned once (its first failure is a usage error's)

    @property
    def sums(self):
        """The sums of the finished units."""
        return self.acc

    def signature(self):
        """Every argument that determines the result: what a checkpoint must match to be resumed."""
        j, ex = self.job, self.job.data.example
        return {"version": ckpt.VERSION, "grid": j.grid.tolist(), "seed": j.seed, "samples": self.plan.samples,
                "unit": UNIT, "data_shape": list(ex.shape[1:]), "data_dtype": str(ex.dtype),
                "model": protocol.describe(j.denoiser), "fingerprints": self.fingerprints(),
                "spectral": j.image is not None, "shard": list(j.shard), "nonfinite": j.nonfinite,
                "control": control.names(j.controls) or None, **self.plan.signature(),
                **({"control_decision": self.decision} if self.decision is not None else {})}

    def fingerprints(self):
        if not hasattr(self, "_prints"):
            d = self.job.data
            self._prints = {"model": fingerprint(self.job.denoiser)[0], "data": fingerprint(d.source)[0],
                            "labels": None if d.labels is None else fingerprint(d.labels)[0]}
        return self._prints

    # -- the runtime's questions: units, rows, counts, the plan's state

    def units(self):
        return n_units(self.job.grid.size, self.plan.samples)

    def unit_rows(self, ids):
        return unit_rows(ids, self.job.grid.size, self.plan.samples)

    def counts(self, fin, arrays):
        """Rows per sigma (and of the data's power, last) in the arrays and in the finished units."""
        n = self.job.grid.size
        rows = np.bincount(fin % n, weights=self.unit_rows(fin), minlength=n)
        got, power = sums.rows_per_sigma(arrays)
        if power is not None:
            got, rows = np.append(got, power), np.append(rows, rows.sum())
        return got, rows, lambda i: f"at sigma index {i}" if i < n else "of the data's power"

    def state(self):
        return self.plan.state()

    def restore(self, state, finished):
        self.plan.restore(state, finished)

    def resume(self):
        """A checkpoint's decision on ``"auto"``'s controls first (the signature holds it), then the runtime's."""
        if self.checkpointing.path is not None and os.path.exists(self.checkpointing.path):
            self.adopt_decision(self.checkpointing.path)
        super().resume()

    # -- one batch

    def prepare(self, batch):
        """A batch's rows on the device and, unless the fused mixture path draws its own, their noisy inputs.
        On CUDA it runs one batch ahead in a worker thread, while the device works on the current one."""
        j = self.job
        x0, rid, idx, lab, pick = on_device(batch, j.data, j.device, j.dtype, j.key)
        sigma = self.grid.index_select(0, idx)
        x = None if j.mixture is not None else j.kern.perturb(x0, sigma, j.key, rid)  # cast in compute
        return x0, rid, idx, lab, x, sigma, pick

    def compute(self, x0, rid, idx, lab, x, sigma, pick):
        """Denoise rows and accumulate them into the scratch sums."""
        j = self.job
        if j.mixture is not None:
            return self.scratch.fill_ideal(j.kern, j.mixture, x0, sigma, key=j.key, rid=rid, idx=idx)
        timed = self.deciding()  # the pilot of control="auto": what the network and the controls cost
        with self.watch.part("network", timed):
            out = self.network(x, sigma, lab)
        if not torch.is_tensor(out):
            raise InputError(protocol.not_a_tensor(out, x))
        if out.shape != x.shape:
            raise InputError(f"denoiser output has shape {tuple(out.shape)}, expected the input's {tuple(x.shape)}")
        if not out.dtype.is_floating_point:  # complex or integer: its "squared error" would be another quantity
            raise InputError(f"denoiser output has dtype {out.dtype}: a real floating-point tensor is expected")
        self.scratch.fill(j.kern, out, x0, idx)
        if j.controls:
            with self.watch.part("controls", timed):
                self.scratch.fill_controls(j.controls, out, x0, idx, x=x, sigma=sigma, rows=pick)
        self.watch.rows += out.shape[0] if timed else 0

    def network(self, x, sigma, lab):
        """The denoiser's output for one batch, in its dtype (numpy's float64 rows, a float32 net). Its first call
        failing is taken for a usage error (rows of the wrong shape, most often) and said so, the cause chained."""
        j = self.job
        try:
            out = j.network(x.to(j.net_dtype), sigma.to(j.net_dtype), lab)
        except (RuntimeError, ValueError, TypeError, IndexError) as e:
            if self.called or _is_oom(e):
                raise
            raise InputError(protocol.failed_first_call(e, x, sigma)) from e
        self.called = True
        return out

    def computed(self, rows):
        """True once the rows are computed; False on out-of-memory (of more than one row). The retry happens after
        this returns: inside the ``except`` the traceback keeps the failed call's tensors alive."""
        try:
            self.compute(*rows)
            return True
        except Exception as e:
            if not _is_oom(e) or len(rows[0]) == 1:
                raise
        return False

    def run_rows(self, rows):
        """Rows into the pending sums, all or nothing; on out-of-memory halve the batch and retry from clean scratch.
        Returns how many."""
        self.scratch.zero_()
        if self.computed(rows):
            self.pending.add_(self.scratch)
            return len(rows[0])
        if self.job.device.type == "cuda":
            torch.cuda.empty_cache()
        step = self.limit.rows = max(1, len(rows[0]) // 2)
        warnings.warn(f"out of memory at batch size {len(rows[0])}: going on with {step}", stacklevel=4)
        return sum(self.run_rows(tuple(None if t is None else t[lo:lo + step] for t in rows))
                   for lo in range(0, len(rows[0]), step))

    # -- control="auto": the pilot decides

    def deciding(self):
        """True while an adaptive run asked for ``control="auto"`` has controls and has not decided on them."""
        j = self.job
        return (isinstance(j.control_request, str) and j.control_request == "auto" and bool(j.controls)
                and self.decision is None and hasattr(self.plan, "controls_pay"))

    def decide(self, seconds):
        """After the pilot (``seconds`` of wall time, this process's rows): keep the controls only where they
        shorten the predicted wall time to the tolerance (:meth:`adaptive.AdaptivePlan.controls_pay`). Returns the
        profile so far where they are kept (the round's decision reads it too: one host sync), else None."""
        prof = self.so_far()
        spent = torch.tensor([seconds, self.watch.seconds("controls"), self.watch.rows], dtype=torch.float64,
                             device=self.job.device)
        if self.job.dist is not None:  # every rank takes the same decision: their costs summed
            torch.distributed.all_reduce(spent)
        self.decision = self.plan.controls_pay(prof, *spent.tolist())
        if self.decision["on"]:
            return prof
        self.drop_controls()
        return None

    def drop_controls(self):
        """The run without its controls from here on: the sums keep every part but theirs."""
        j = self.job = dataclasses.replace(self.job, controls=())
        kept = sums.Sums(j.grid.size, j.device, 0, j.image)
        for k, v in kept.parts.items():
            v.copy_(self.sums.parts[k])
        self.committed = (kept, self.finished)
        self.pending, self.scratch = kept.like(), kept.like()

    def adopt_decision(self, path):
        """A checkpoint's decision on ``"auto"``'s controls, taken as this run's (so that its signature matches)."""
        if self.deciding():
            saved, _ = ckpt.load(path)
            decision = saved.get("control_decision") if isinstance(saved, dict) else None
            if isinstance(decision, dict) and "on" in decision:
                self.decision = decision
                if not decision["on"]:
                    self.drop_controls()

    # -- checkpoints and checks

    def check_finite(self):
        """Raise for non-finite denoiser output (unless skipped): a host sync."""
        if self.job.nonfinite == "raise" and self.sums.any_nonfinite():
            raise InputError(sums.nonfinite_message(self.job.grid, self.arrays()))

    # -- rounds

    def run(self, units, bar):
        """Every unit of ``units`` into the sums, checkpointing and checking on the way (the runtime's loop)."""
        j = self.job
        batches = packed(drawn(j.data, units, j.seed), self.limit)
        self.loop(prefetched(batches, self.prepare, ahead=j.device.type == "cuda"), self.run_rows, bar)

    def so_far(self):
        """The profile of every finished unit, all ranks together, plain and control sums only (a host sync:
        once per round)."""
        self.check_finite()
        parts = {k: v.clone() for k, v in self.sums.parts.items() if k in ("acc", "cv")}
        for v in parts.values() if self.job.dist is not None else ():
            torch.distributed.all_reduce(v)
        host = {k: v.cpu().numpy() for k, v in parts.items()}
        return Profile(self.job.grid, dim=self.job.data.dim, **sums.fields(host, plain_only=True))

    def rounds(self, bar):
        """The plan's rounds until it is done, checkpointing between them."""
        while True:
            start = time.perf_counter()
            self.run(self.plan.units(self.job.shard, self.finished), bar)
            kept = self.decide(time.perf_counter() - start) if self.deciding() else None
            if self.plan.next(self.so_far if kept is None else lambda: kept):
                return
            if hasattr(bar, "total"):
                bar.total = self.plan.rows(self.job.shard)
                bar.refresh()
            self.save()

    def execute(self, progress):
        """Resume, run every round on the runtime and return the Profile."""
        j = self.job
        bars = []

        def bar(done):
            bars.append(progress_bar(progress, self.plan.rows(j.shard), done, j.shard[0] != 0 and j.dist is not None))
            return bars[0]
        try:
            super().execute(bar)
        finally:
            if bars and bars[0] is not progress:
                bars[0].close()
        return self.profile()

    # -- the result

    def meta(self, host):
        """The profile's record of the run."""
        j = self.job
        meta = {"seed": j.seed, **self.plan.meta(), "unit": UNIT, "evaluations": sums.evaluations(host),
                "data_shape": list(j.data.example.shape[1:]), "model": protocol.describe(j.denoiser),
                "dtype": str(j.net_dtype).replace("torch.", ""),
                "units": {"classes": [[0, 1]] if j.dist is not None else [list(j.shard)], "nonfinite": j.nonfinite},
                "fingerprints": self.fingerprints()}
        if self.limit.rows != j.throughput.batch_size:
            meta["batch_size_used"] = self.limit.rows
        wide = importance(j.data.dim) if j.mixture is not None else ()  # the model-free path's sampling
        if wide:
            meta["importance"] = {"wide": [list(t) for t in wide]}
        if j.controls:
            meta["control"] = control.names(j.controls)
        if self.decision is not None:
            meta["control_decision"] = self.decision
        return meta

    def profile(self):
        """The Profile of the whole run, all ranks together."""
        host = self.arrays()  # all ranks' (the runtime reduced them)
        meta = self.meta(host)
        dropped = host["acc"][sums.NONFINITE]
        if dropped.any():
            if self.job.nonfinite == "raise":
                raise InputError(sums.nonfinite_message(self.job.grid, host))
            meta.update(dropped=int(dropped.sum()), dropped_per_sigma=dropped.astype(int).tolist())
        meta = {k: meta[k] for k in _META_ORDER if k in meta} | meta
        return Profile(self.job.grid, dim=self.job.data.dim, meta=meta, **sums.fields(host))


# the order of a profile's meta entries (summary lines), as before the run was an object
_META_ORDER = ("seed", "samples", "unit", "evaluations", "data_shape", "model", "dtype", "units", "fingerprints",
               "dropped", "dropped_per_sigma", "batch_size_used", "importance", "adaptive", "control",
               "control_decision")
