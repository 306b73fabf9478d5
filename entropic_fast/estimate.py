"""The Monte-Carlo driver: per-sigma denoising error of a denoiser on data (DESIGN.md section 1).

The loop only: work units and their seeds live in ``units``, checkpoints in ``checkpoint``,
fingerprints in ``fingerprint``, signal handling in ``signals``. A batch packs whole units (of
mixed sigmas), so the profile depends neither on ``batch_size`` nor on the backend nor on how the
units are shared out. Accumulators stay on the device in float64 and the loop never waits on the
device, except to write a checkpoint and, every ``_CHECK_SECONDS``, to look for non-finite outputs.
Each batch is computed into scratch accumulators and committed whole; a unit's rows are committed
together with its id, inside a critical section that signals cannot split, so a checkpoint written
at any moment holds exactly the finished units.
"""
import concurrent.futures
import inspect
import os
import time
import warnings

import numpy as np
import torch
from tqdm.auto import tqdm

from . import checkpoint as ckpt
from . import checks, files, signals
from .checkpoint import CheckpointMismatch  # noqa: F401  (re-exported: the error users catch)
from .errors import InputError
from .fingerprint import fingerprint
from .grids import sigma_grid
from .kernels import launchers
from .kernels.reference import importance
from .profile import Profile, _as_grid
from .control import sums_size
from .units import (UNIT, data_rows, noise_key, plan_rows, plan_units, shard_rows, unit_rows, unit_seed,
                    work_units)

_CHECK_SECONDS = 10.0


def _sampled(drawn, what="data.sample"):
    """``(rows, labels or None)`` of what a sampler object returned: rows, or ``(rows, labels)``."""
    x0, lab = drawn if isinstance(drawn, tuple) and len(drawn) == 2 else (drawn, None)
    x0 = torch.as_tensor(x0)
    if lab is not None:
        lab = torch.as_tensor(lab)
        if lab.ndim < 1 or lab.shape[0] != x0.shape[0]:
            raise InputError(f"{what} returned {x0.shape[0]} rows but labels of shape {tuple(lab.shape)}")
    return x0, lab


def _draw(data, rows, generator):
    """A sampler object's draw of one unit, with its own CPU generator: ``(rows, labels or None)``."""
    x0, lab = _sampled(data.sample(rows, generator=generator))
    if x0.device.type == "cpu" and not bool(torch.isfinite(x0).all()):  # host data: no device sync
        raise InputError(f"data.sample returned non-finite values ({type(data).__name__})")
    return x0, lab


def _units(data, units, seed):
    """Per unit: its work id and (row ids, sigma indices, and a sampler's draw or None), on the host; a data
    tensor's rows are drawn per batch, from the row ids, by ``_rows``."""
    gen = torch.Generator()
    for w, u, i, rows in units:
        draw = None if torch.is_tensor(data) else _draw(data, rows, gen.manual_seed(unit_seed(seed, i, u)))
        yield w, (np.arange(w * UNIT, w * UNIT + rows, dtype=np.int64), np.full(rows, i, dtype=np.int64), draw)


def _rows(batch, data, labels, device, dtype, key):
    """A batch's data rows, row ids, sigma indices and labels on ``device``: one gather and one copy each."""
    rid, idx, draw = batch
    if draw is None:
        pick = torch.from_numpy(data_rows(key, rid, data.shape[0])).to(data.device, non_blocking=True)
        x0 = data.index_select(0, pick)  # a third of data[pick]'s time
        lab = None if labels is None else labels.index_select(0, pick.to(labels.device))
    else:
        x0, lab = draw
        if device.type == "cuda" and x0.device.type == "cpu":
            x0 = x0.pin_memory()  # in the prefetch thread: the copy below overlaps the device's work
    return (x0.to(device=device, dtype=dtype, non_blocking=True), torch.from_numpy(rid).to(device, non_blocking=True),
            torch.from_numpy(idx).to(device, non_blocking=True),
            None if lab is None else lab.to(device, non_blocking=True))


def _cat(parts):
    """Units' (nested) tuples of numpy arrays, tensors or None, joined row-wise."""
    first = parts[0]
    return tuple(_cat(p) if isinstance(f, tuple) else None if f is None else
                 np.concatenate(p) if isinstance(f, np.ndarray) else torch.cat(p) for f, p in zip(first, zip(*parts)))


def _slice(rows, lo, hi):
    """Rows ``lo:hi`` of a (nested) tuple of arrays or tensors."""
    return tuple(_slice(t, lo, hi) if isinstance(t, tuple) else None if t is None else t[lo:hi] for t in rows)


def _rows_in(unit):
    return unit[0].shape[0]


def _batches(units, limit):
    """Pack whole units into batches of at most ``limit[0]`` rows (read anew for every batch, so it may
    shrink); a unit larger than that is cut into batches of its own. Yields ``(rows, finished work ids)``:
    a batch whose list is empty ends inside a unit."""
    pending, ids, n = [], [], 0
    for w, unit in units:
        rows = _rows_in(unit)
        if pending and n + rows > limit[0]:
            yield _cat(pending), ids
            pending, ids, n = [], [], 0
        if rows > limit[0]:
            lo = 0
            while lo < rows:  # the limit may shrink between chunks
                step = limit[0]
                yield _slice(unit, lo, lo + step), ([w] if lo + step >= rows else [])
                lo += step
            continue
        pending.append(unit)
        ids.append(w)
        n += rows
    if pending:
        yield _cat(pending), ids


def _prefetched(batches, prepare, ahead):
    """``(prepare(batch), ids)`` for each batch. With ``ahead``, ``prepare`` runs one batch ahead in a worker
    thread, so that the host's gathers and copies overlap the device's work (on CUDA; on the CPU the worker
    would only compete with the network for the same cores: measured 1.15x against 1.08x on 2 cores)."""
    if not ahead:
        for batch, ids in batches:
            yield prepare(batch), ids
        return
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="entropic-fast-prefetch") as pool:
        it = iter(batches)
        nxt = next(it, None)
        future = None if nxt is None else pool.submit(prepare, nxt[0])
        while nxt is not None:
            ids, nxt = nxt[1], next(it, None)
            rows = future.result()
            future = None if nxt is None else pool.submit(prepare, nxt[0])
            yield rows, ids


def _module_dtype(denoiser):
    """The floating dtype a denoiser declares (``.dtype``) or of a module's parameters, or None."""
    declared = getattr(denoiser, "dtype", None)
    if isinstance(declared, torch.dtype) and declared.is_floating_point:
        return declared
    if isinstance(denoiser, torch.nn.Module):
        for p in denoiser.parameters():
            if p.is_floating_point():
                return p.dtype
    return None


def _padded(fn):
    """``fn`` called on batches padded to the largest batch seen, so a compiled network sees one shape."""
    width = [0]

    def call(x, sigma, lab):
        rows = x.shape[0]
        width[0] = max(width[0], rows)
        if rows == width[0]:
            return fn(x, sigma, lab)
        pad = [t if t is None else torch.cat([t, t[:1].expand(width[0] - rows, *t.shape[1:])])
               for t in (x, sigma, lab)]
        return fn(*pad)[:rows]
    return call


def _network(denoiser, compile, channels_last, labels_kwarg=None):
    """The denoiser as the loop calls it, ``(x, sigma, labels_or_None) -> D``: compiled and channels-last
    on request."""
    if channels_last and isinstance(denoiser, torch.nn.Module):
        denoiser.to(memory_format=torch.channels_last)
    fn = torch.compile(denoiser, dynamic=False) if compile else denoiser

    def call(x, sigma, lab):
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if lab is None:
            return fn(x, sigma)
        return fn(x, sigma, lab) if labels_kwarg is None else fn(x, sigma, **{labels_kwarg: lab})
    return _padded(call) if compile else call


_CONTROLS = ("auto", "wiener", "local", "both")


def _controls(control, data, fused):
    """The control variates of a run (``control`` objects), possibly none.

    ``wiener``: the data's Wiener denoiser (needs a data tensor, or data with exact ``moments()``);
    ``local``: per-cluster Wiener denoisers (from the data tensor, or 4096 of the sampler's own rows);
    ``both``; ``auto``: both for a data tensor or data with exact moments whose rows have at most
    ``control.AUTO_DIM`` values (the data's own only where its covariance costs at most ``control.MAX_WORK``);
    none on the fused mixture path or for other samplers."""
    from . import control as cv
    if control is None or (control == "auto" and fused):
        return []
    if isinstance(control, (list, tuple)) and all(callable(getattr(c, "centred", None)) for c in control):
        return list(control)
    if not isinstance(control, str) or control not in _CONTROLS:
        raise InputError(f"control must be one of {', '.join(_CONTROLS)}, None, or a list of control objects; "
                         f"got {control!r}")
    moments = None if torch.is_tensor(data) else getattr(data, "moments", None)
    if control == "auto" and not (torch.is_tensor(data) or callable(moments)):
        return []  # a sampler of unknown cost: drawing rows for the clusters is the user's call ("local")
    rows = data if torch.is_tensor(data) else None
    if rows is None and control != "wiener":
        rows, _ = _sampled(data.sample(4096, generator=torch.Generator().manual_seed(0)))
    if control == "auto" and rows[0].numel() > cv.AUTO_DIM:
        return []
    out = []
    if control in ("wiener", "both", "auto"):
        if torch.is_tensor(data) and (control != "auto" or data.shape[0] * data[0].numel() ** 2 <= cv.MAX_WORK):
            out.append(cv.Wiener.of_rows(data))
        elif callable(moments):
            out.append(cv.Wiener.of_moments(*moments()))
        elif control != "auto":
            raise InputError(f"control={control!r} needs a data tensor, or data with exact moments() (the analytic "
                             f"models), for the data's Wiener denoiser; {type(data).__name__} has neither")
    if control in ("local", "both", "auto"):
        out.append(cv.LocalWiener.of_rows(rows))
    return out


def _accumulate_control(controls, out, x, x0, sigma, idx, into):
    """Per sigma: the sums of the centred controls, their products and their products with the error
    (``control.row_sums``), over the rows whose error is finite."""
    from .control import row_sums
    e = (out.to(torch.float64) - x0.to(torch.float64)).square().reshape(out.shape[0], -1).sum(1)
    ok = torch.isfinite(e)
    c = torch.stack([ctl.centred(x, x0, sigma) for ctl in controls])
    into.index_add_(1, idx, torch.where(ok, row_sums(torch.where(ok, e, 0.0), c), 0.0))


def _progress_bar(progress, total, done, quiet):
    """A tqdm bar (``progress`` true or false), or the caller's own object with ``update(rows)``."""
    if isinstance(progress, (bool, np.bool_)):
        return tqdm(total=total, initial=done, desc="profile", unit="sample", leave=False,
                    disable=not progress or quiet)
    if isinstance(progress, dict) or not callable(getattr(progress, "update", None)):
        raise InputError(f"progress must be True, False or an object with an update(rows) method, got {progress!r}")
    if done:
        progress.update(done)
    return progress


def _pick_device(denoiser, data, device):
    if device is not None:
        try:
            device = torch.device(device)
        except (RuntimeError, TypeError):
            raise InputError(f"device must be a torch device such as 'cpu' or 'cuda:0', got {device!r}") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise InputError(f"device {device} was asked for, but CUDA is not available on this machine")
        return device
    declared = getattr(denoiser, "device", None)
    if isinstance(declared, torch.device):
        return declared
    if isinstance(denoiser, torch.nn.Module):
        for p in denoiser.parameters():
            return p.device
    return data.device if torch.is_tensor(data) else torch.device("cpu")


def _fit_controls(controls, data, example, grid, control):
    """The controls that fit the rows and whose assumptions hold: the noise at the smallest sigma must survive
    the rows' rounding (at 1e18, float32 or float64 rows lose noise of sigma 80, and a control's known mean no
    longer holds); ``"auto"`` drops them where it does not, an explicit request is refused naming the range."""
    if not controls:
        return controls
    rows = data if torch.is_tensor(data) else example
    top = max(abs(float(rows.max())), abs(float(rows.min())))  # once, before the loop; no |rows| copy
    ulp = top * torch.finfo(torch.float64 if example.dtype == torch.float64 else torch.float32).eps
    if ulp > 1e-3 * float(grid[0]):
        if control == "auto":
            return []
        raise InputError(f"control variates need the noise to survive the rows' rounding: the rows reach {top:.3g}, "
                         f"where {example.dtype} resolves {ulp:.3g}, and the grid starts at sigma {float(grid[0]):.3g}; "
                         f"use control=None, or a grid from sigma {1e3 * ulp:.3g}")
    x = example[:1].expand(2, *example.shape[1:]).contiguous()  # two rows: a control that does not fit fails here
    for c in controls:
        try:
            c.centred(x, x, torch.full((2,), float(grid[0]), dtype=torch.float64, device=x.device))
        except (RuntimeError, ValueError, IndexError) as e:
            raise InputError(f"control {getattr(c, 'name', c)!r} does not fit rows of shape "
                             f"{tuple(example.shape[1:])}: {e}") from None
    return controls


def _check_labelling(denoiser, data, labels, labels_kwarg, labelled):
    """The keyword labels go by, and a labelled run's denoiser takes them; labels checked once, before the loop
    (by the denoiser's ``check_labels``, where it has one), so the loop never syncs with the device for them."""
    if labels_kwarg is not None and (not isinstance(labels_kwarg, str) or not labels_kwarg.isidentifier()):
        raise InputError(f"labels_kwarg must be a keyword name such as 'cond', got {labels_kwarg!r}")
    if labelled:
        _check_takes_labels(denoiser, labels_kwarg)
        every = labels if labels is not None else getattr(data, "labels", None)
        if every is not None and callable(getattr(denoiser, "check_labels", None)):
            denoiser.check_labels(every)


def _checkpoint_path(checkpoint, dist, shard):
    """The checkpoint file of this process (one per rank under torch.distributed), checked writable; or None."""
    if checkpoint is None:
        return None
    checkpoint = checks.path(checkpoint, "checkpoint")
    if dist is not None:
        checkpoint = f"{checkpoint}.rank{shard[0]}-of-{shard[1]}"
    files.check_writable(checkpoint, "checkpoint")
    return checkpoint


def _check_data(data, labels):
    """Validate ``data`` / ``labels``; return one example row (shape and dtype)."""
    if torch.is_tensor(data):
        if data.ndim < 2 or data.shape[0] < 1 or data[0].numel() < 1:
            raise InputError(f"data must be a tensor (N, *shape) with N >= 1 and non-empty rows, "
                             f"got shape {tuple(data.shape)}")
        if not data.is_floating_point():
            raise InputError(f"data must be floating point, got {data.dtype}")
        # once, before the loop; a finite sum has no inf or nan in it (and costs no temporary); an overflowing one
        # is looked at element by element
        if not bool(torch.isfinite(data.sum())) and not bool(torch.isfinite(data).all()):
            bad = int((~torch.isfinite(data.reshape(data.shape[0], -1))).any(1).nonzero()[0, 0])
            raise InputError(f"data has non-finite values (first in row {bad})")
        if labels is not None and (not torch.is_tensor(labels) or labels.ndim < 1 or labels.shape[0] != data.shape[0]):
            raise InputError(f"labels must be a tensor with one row per data row ({data.shape[0]}), got "
                             f"{getattr(labels, 'shape', type(labels).__name__)}")
        return data[:1], labels is not None
    if not hasattr(data, "sample"):
        raise InputError(f"data must be a tensor (N, *shape) or have .sample(n, generator), got {type(data).__name__}")
    if labels is not None:
        raise InputError("labels go with a tensor `data` row for row; a sampler object returns its own "
                         "(rows, labels) from .sample")
    example, lab = _sampled(data.sample(1, generator=torch.Generator().manual_seed(0)), "data.sample(1)")
    if example.ndim < 2 or example.shape[0] != 1 or not example.is_floating_point():
        raise InputError(f"data.sample(1) must return a floating tensor of shape (1, *shape), got "
                         f"{example.dtype} {tuple(example.shape)}")
    if not bool(torch.isfinite(example).all()):
        raise InputError(f"data.sample returned non-finite values ({type(data).__name__})")
    return example, lab is not None


def _check_takes_labels(denoiser, labels_kwarg=None):
    """Refuse, before any work, a denoiser that cannot take the labels the data carries."""
    try:  # a module's __call__ takes anything: read its forward
        sig = inspect.signature(denoiser.forward if isinstance(denoiser, torch.nn.Module) else denoiser)
    except (TypeError, ValueError):  # a builtin or C callable: no signature to read
        return
    try:
        sig.bind(None, None, None) if labels_kwarg is None else sig.bind(None, None, **{labels_kwarg: None})
    except TypeError:
        if labels_kwarg is not None:
            raise InputError(f"the denoiser {_describe(denoiser)} takes no keyword {labels_kwarg!r} "
                             f"(labels_kwarg); its signature is {sig}") from None
        raise InputError(f"the data carries labels but the denoiser {_describe(denoiser)} takes no third argument: "
                         "for an unconditional model drop them (labels=None; a dataset reader with labels=False, "
                         "--no-labels on the command line)") from None


def _describe(denoiser):
    return getattr(denoiser, "description", None) or type(denoiser).__name__


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


def _distributed():
    """``(rank, world size)`` of an initialised torch.distributed group, else None."""
    d = torch.distributed
    if d.is_available() and d.is_initialized() and d.get_world_size() > 1:
        return d.get_rank(), d.get_world_size()
    return None


def _is_oom(e):
    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", ())
    return isinstance(e, oom)


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


def _nonfinite_message(grid, a):
    i = int(np.flatnonzero(a[3])[0])
    return (f"denoiser output is not finite at sigma={grid[i]:.6g} ({int(a[3, i])} of {int(a[2, i] + a[3, i])} "
            f"samples so far; {int(a[3].sum())} in all); nonfinite='skip' (--nonfinite skip) drops such samples instead")


def profile(denoiser, data, sigmas=None, *, samples=1024, batch_size=256, seed=0, spectral=False, labels=None,
            device=None, backend="auto", progress=True, checkpoint=None, checkpoint_every=256,
            checkpoint_seconds=600.0, nonfinite="raise", shard=None, compile=False, channels_last=False,
            labels_kwarg=None, plan_rule=None, control="auto"):
    """Monte-Carlo profile of ``e(s) = E||D(x0 + s n, s) - x0||^2`` on a sigma grid (Stancevic et al. sec. 4):
    the engine under ``entropic_fast.profile`` (``adaptive.profile``), which adds adaptive sample counts.

    ``samples`` is the count per sigma, unless ``plan_rule`` (an ``adaptive.PlanRule``) decides the
    units per sigma in rounds: it gives the pilot plan, then the next plan from the profile so far.
    ``meta["evaluations"]`` counts every row evaluated.

    ``control`` (variance reduction, ``entropic_fast.control``): the errors of linear (Wiener) denoisers,
    whose means are known exactly, as control variates: ``"wiener"`` the data's own, ``"local"`` one per
    k-means cluster of the data, ``"both"`` (rows of at most ``control.MAX_DIM`` values); ``"auto"`` (the
    default) both where the rows have at most ``control.AUTO_DIM`` values (not on the fused mixture path);
    ``None`` none. The profile keeps their
    sums (``mse`` and ``stderr`` are the controlled estimate's; ``variance_ratio`` is what they gained).

    ``data`` is a tensor ``(N, *shape)`` sampled with replacement, or an object with
    ``.sample(n, generator=None)``. ``backend`` is ``auto`` (Triton kernels on CUDA, torch
    otherwise), ``triton`` or ``torch``. ``spectral=True`` also accumulates the error power per
    channel and frequency and the data power (image data). A mixture model from ``analytic`` (GMM,
    PointSet) used as the denoiser runs fused: noise, ideal denoiser and error in one kernel
    (not with ``spectral``).

    Long runs: ``checkpoint=PATH`` saves the accumulators and the finished work units every
    ``checkpoint_every`` units or ``checkpoint_seconds`` seconds, and when anything stops the loop:
    an exception, SIGINT (Ctrl-C) or SIGTERM, the signals being held back to the next unit boundary
    and raised there as :class:`~entropic_fast.errors.Interrupted` after the checkpoint is written.
    A rerun with the same arguments resumes there; the signature checked on resume holds
    fingerprints of the denoiser, the data and the labels (see ``fingerprint``). Under
    ``torch.distributed`` the ranks share the work units and all-reduce the accumulators (each rank
    checkpoints its own share to ``PATH.rank<r>-of-<w>``). A non-finite denoiser output raises,
    naming the sigma, at the next checkpoint or check (every 10 s) or at the end;
    ``nonfinite="skip"`` drops such samples instead and records how many. A CUDA out-of-memory
    error halves the batch and goes on. ``shard=(index, count)`` computes one share of the units;
    the shares' profiles merge into the whole.

    Labels (a ``labels`` tensor, or what a dataset reader's ``sample`` returns) reach the denoiser as
    its third positional argument, or, with ``labels_kwarg="cond"``, by that keyword (k-diffusion and
    ComfyUI-style wrappers take conditioning so). A denoiser with a ``check_labels(labels)`` method
    (the EDM adapters) has all the labels checked once, before the loop.

    Throughput: on CUDA the next batch's rows are gathered, copied and perturbed in a worker thread
    while the device runs the network; the progress bar counts samples per second. ``progress`` may
    also be the caller's own bar, any object with ``update(rows)`` (ComfyUI's ``ProgressBar``).
    ``compile=True`` runs the denoiser through ``torch.compile`` with a fixed batch shape (a short
    last batch is padded to the full one and the padding dropped), so it compiles once.
    ``channels_last=True`` hands 4-d inputs to the network in channels-last memory format and
    converts a module denoiser's parameters to it (in place, as ``Module.to`` does).
    """
    grid = sigma_grid() if sigmas is None else _as_grid(sigmas)
    data, labels = (torch.from_numpy(np.ascontiguousarray(a)) if isinstance(a, np.ndarray) else a
                    for a in (data, labels))  # numpy arrays are ordinary arguments
    adaptive = plan_rule is not None
    samples = plan_rule.samples if adaptive else checks.integer(samples, "samples", 1)
    batch_size = checks.integer(batch_size, "batch_size", 1)
    checkpoint_every = checks.integer(checkpoint_every, "checkpoint_every", 1)
    checkpoint_seconds = checks.real(checkpoint_seconds, "checkpoint_seconds", positive=True, finite=False)
    seed = checks.integer(seed, "seed")
    checks.one_of(nonfinite, "nonfinite", ("raise", "skip"))
    compile, channels_last = checks.flag(compile, "compile"), checks.flag(channels_last, "channels_last")
    dist = _distributed()
    shard = _check_shard(shard, dist)
    example, labelled = _check_data(data, labels)
    _check_labelling(denoiser, data, labels, labels_kwarg, labelled)
    device = _pick_device(denoiser, data, device)
    kern = launchers(backend, device)
    dtype = torch.float64 if example.dtype == torch.float64 else torch.float32
    net_dtype = _module_dtype(denoiser) or dtype
    _check_range(grid, example, net_dtype)
    spectral = checks.flag(spectral, "spectral")
    checkpoint = _checkpoint_path(checkpoint, dist, shard)
    mixture = getattr(denoiser, "mixture", None) if not labelled and not spectral else None
    controls = _fit_controls([c.to(device) for c in _controls(control, data, mixture is not None)], data,
                             example.to(device), grid, control)
    if controls:
        mixture = None  # the fused path gives no per-row errors to pair with the controls
    network = _network(denoiser, compile, channels_last and example.dim() == 4, labels_kwarg)
    if mixture is not None:
        mixture = tuple(t.to(device) for t in mixture)
    n = grid.size
    grid_dev = torch.as_tensor(grid, dtype=dtype, device=device)
    key = noise_key(seed)
    prints = {"model": fingerprint(denoiser)[0], "data": fingerprint(data)[0],
              "labels": None if labels is None else fingerprint(labels)[0]}

    def zeros(*shape):
        return torch.zeros(*shape, dtype=torch.float64, device=device)

    acc = {"acc": zeros(4, n)}  # sum, sumsq, count, non-finite per sigma
    if controls:
        acc["cv"] = zeros(sums_size(len(controls)), n)  # the control variates' sums (control.row_sums)
    if spectral:
        image = _image_shape(example.shape[1:])
        acc.update(spec=zeros(n, *image), power=zeros(1, *image), power_acc=zeros(4, 1), mean=zeros(*image))
    pending = {k: torch.zeros_like(v) for k, v in acc.items()}  # rows of units not yet finished
    scratch = {k: torch.zeros_like(v) for k, v in acc.items()}  # the batch in flight
    signature = {"version": ckpt.VERSION, "grid": grid.tolist(), "seed": seed, "samples": samples,
                 "unit": UNIT, "data_shape": list(example.shape[1:]), "data_dtype": str(example.dtype),
                 "model": _describe(denoiser), "fingerprints": prints, "spectral": bool(spectral),
                 "shard": list(shard), "nonfinite": nonfinite, "control": [c.name for c in controls] or None}
    plan = None
    if adaptive:
        signature["adaptive"] = plan_rule.signature()
        plan = plan_rule.pilot(n)
    finished, rounds = [], []  # rounds: the adaptive decisions taken (evaluations and band of each)
    if checkpoint is not None and os.path.exists(checkpoint):
        finished, arrays, saved_plan, rounds = ckpt.read(checkpoint, signature, acc)
        plan = saved_plan if adaptive else None
        for k, v in arrays.items():
            acc[k].copy_(torch.as_tensor(v))
    done_rows = int(unit_rows(np.asarray(finished, np.int64), n, samples).sum())
    total_rows = plan_rows(plan, shard) if adaptive else shard_rows(n, samples, shard)
    bar = _progress_bar(progress, total_rows, done_rows, shard[0] != 0 and dist is not None)
    limit = [batch_size]
    since, last_save, last_check = 0, time.monotonic(), time.monotonic()

    def prepare(batch):
        """A batch's rows on the device and, unless the fused mixture path draws its own, their noisy inputs.
        On CUDA it runs one batch ahead in a worker thread, while the device works on the current one."""
        x0, rid, idx, lab = _rows(batch, data, labels, device, dtype, key)
        sigma = grid_dev.index_select(0, idx)
        x = None if mixture is not None else kern.perturb(x0, sigma, key, rid)  # cast to the network's in compute
        return x0, rid, idx, lab, x, sigma

    def compute(x0, rid, idx, lab, x, sigma):
        """Denoise rows and accumulate them into ``scratch``."""
        if mixture is not None:
            kern.ideal_error(*mixture, x0, sigma, key, rid, idx, scratch["acc"])
            return
        out = network(x.to(net_dtype), sigma, lab)
        if not torch.is_tensor(out) or out.shape != x.shape:
            raise InputError(f"denoiser output has shape {tuple(getattr(out, 'shape', ()))}, "
                             f"expected the input's {tuple(x.shape)}")
        kern.accumulate_error(out, x0, idx, scratch["acc"], scratch.get("spec"))
        if controls:  # from the unrounded noisy rows: the controls' means are exact for them
            _accumulate_control(controls, out, x, x0, sigma, idx, scratch["cv"])
        if spectral:
            kern.accumulate_error(x0, torch.zeros_like(x0), torch.zeros_like(idx), scratch["power_acc"],
                                  scratch["power"])
            scratch["mean"] += x0.reshape(-1, *image).sum(0, dtype=torch.float64)

    def computed(rows):
        """True once the rows are computed; False on out-of-memory (of more than one row). The retry happens after
        this returns: inside the ``except`` the traceback keeps the failed call's tensors alive."""
        try:
            compute(*rows)
            return True
        except Exception as e:
            if not _is_oom(e) or len(rows[0]) == 1:
                raise
        return False

    def run_rows(*rows):
        """Rows into ``pending``, all or nothing; on out-of-memory halve the batch and retry from clean scratch."""
        for v in scratch.values():
            v.zero_()
        if computed(rows):
            for k in pending:
                pending[k] += scratch[k]
            return
        if device.type == "cuda":
            torch.cuda.empty_cache()
        step = limit[0] = max(1, len(rows[0]) // 2)
        warnings.warn(f"out of memory at batch size {len(rows[0])}: going on with {step}", stacklevel=3)
        for lo in range(0, len(rows[0]), step):
            run_rows(*(None if t is None else t[lo:lo + step] for t in rows))

    def save():
        ckpt.write(checkpoint, signature, acc, finished, plan, rounds)

    def check_finite():
        if nonfinite == "raise" and bool(acc["acc"][3].any()):
            raise InputError(_nonfinite_message(grid, acc["acc"].cpu().numpy()))

    def run(work):
        """Every unit of ``work`` into ``acc``, checkpointing and checking on the way."""
        nonlocal since, last_save, last_check
        units = _units(data, work, seed)
        for rows, ids in _prefetched(_batches(units, limit), prepare, ahead=device.type == "cuda"):
            run_rows(*rows)
            bar.update(rows[0].shape[0])
            if ids:
                with signals.held():  # the rows of these units and their ids, together
                    for k in acc:
                        acc[k] += pending[k]
                        pending[k].zero_()
                    finished.extend(ids)
                since += len(ids)
            now = time.monotonic()
            if checkpoint is not None and ids and (since >= checkpoint_every or now - last_save >= checkpoint_seconds):
                check_finite()
                save()
                since, last_save = 0, now
            elif now - last_check >= _CHECK_SECONDS:
                check_finite()
                last_check = now
            signals.poll()

    def so_far():
        """The profile of every finished unit, all ranks together (a host sync: once per round)."""
        check_finite()
        parts = {k: acc[k].clone() for k in ("acc", "cv") if k in acc}
        for v in parts.values():
            if dist is not None:
                torch.distributed.all_reduce(v)
        a = parts["acc"].cpu().numpy()
        cv = dict(control_sum=parts["cv"].cpu().numpy()) if controls else {}
        return Profile(grid, a[0], a[1], a[2], example[0].numel(), **cv)

    try:
        with signals.deferring(), torch.no_grad():
            try:
                if not adaptive:
                    run(work_units(n, samples, shard, finished))
                while adaptive:
                    run(plan_units(plan, shard, finished))
                    done, new, half = plan_rule.next(so_far(), plan)
                    if done:  # (a resumed finished run has its last round already)
                        if not rounds or rounds[-1]["evaluations"] != int(plan.sum()) * UNIT:
                            rounds.append({"evaluations": int(plan.sum()) * UNIT, "band": half})
                        break
                    with signals.held():  # the plan and its record together
                        rounds.append({"evaluations": int(plan.sum()) * UNIT, "band": half})
                        plan = new
                    if hasattr(bar, "total"):
                        bar.total = plan_rows(plan, shard)
                        bar.refresh()
                    if checkpoint is not None:
                        save()
                        since, last_save = 0, time.monotonic()
            except BaseException:
                if checkpoint is not None:
                    save()
                raise
            if checkpoint is not None and since:
                save()
    finally:
        if bar is not progress:
            bar.close()
    if dist is not None:
        for v in acc.values():
            torch.distributed.all_reduce(v)
    host = {k: v.cpu().numpy() for k, v in acc.items()}
    a = host["acc"]
    meta = {"seed": seed, "samples": None if adaptive else samples, "unit": UNIT,
            "evaluations": int(a[2].sum() + a[3].sum()), "data_shape": list(example.shape[1:]),
            "model": _describe(denoiser), "dtype": str(net_dtype).replace("torch.", ""),
            "units": {"classes": [[0, 1]] if dist is not None else [list(shard)], "nonfinite": nonfinite},
            "fingerprints": prints}
    if a[3].any():
        if nonfinite == "raise":
            raise InputError(_nonfinite_message(grid, a))
        meta.update(dropped=int(a[3].sum()), dropped_per_sigma=a[3].astype(int).tolist())
    if limit[0] != batch_size:
        meta["batch_size_used"] = limit[0]
    wide = importance(example[0].numel()) if mixture is not None else ()  # the model-free path's sampling
    if wide:
        meta["importance"] = {"wide": [list(t) for t in wide]}
    if adaptive:
        meta["adaptive"] = {**plan_rule.signature(), "rounds": rounds, "plan_units": plan.tolist()}
    extra = {}
    if spectral:
        extra = dict(spectral_sum=host["spec"], power_sum=host["power"][0],
                     power_count=float(host["power_acc"][2, 0] + host["power_acc"][3, 0]), mean_sum=host["mean"])
    if controls:
        extra["control_sum"] = host["cv"]
        meta["control"] = [c.name for c in controls]
    return Profile(grid, a[0], a[1], a[2], example[0].numel(), meta, **extra)
