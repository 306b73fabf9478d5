"""The Monte-Carlo driver: per-sigma denoising error of a denoiser on data (DESIGN.md section 1).

Work is cut into units of at most ``UNIT`` samples keyed by ``(seed, sigma index, unit index)``:
each unit draws its data rows with its own generator, and every row has a fixed id from which the
kernels draw its noise (Philox keyed by seed, row id and element index). So the profile depends
neither on ``batch_size`` (a batch packs whole units, of mixed sigmas), nor on the backend, nor on
how the units are shared out (``shard``, or the ranks of a ``torch.distributed`` group).
Accumulators stay on the device in float64 and the loop never waits on the device, except to
write a checkpoint. The committed accumulators always hold exactly the finished units, so a
checkpoint written at any moment (an exception, Ctrl-C) resumes to the uninterrupted result.
"""
import json
import os
import tempfile
import time
import warnings
import zipfile

import numpy as np
import torch
from tqdm.auto import tqdm

from .errors import InputError
from .grids import sigma_grid
from .kernels import launchers
from .profile import Profile, _as_grid

UNIT = 32
CHECKPOINT_VERSION = 1
_MASK64 = (1 << 64) - 1


class CheckpointMismatch(InputError):
    """A checkpoint was written by a run with other arguments."""


def _splitmix64(z):
    """One step of SplitMix64 (Steele et al. 2014): a well mixed 64-bit hash."""
    z = (z + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def unit_seed(seed, sigma_index, unit_index):
    """The 63-bit generator seed of one work unit."""
    return _splitmix64(_splitmix64(_splitmix64(seed & _MASK64) ^ sigma_index) ^ unit_index) >> 1


def noise_key(seed):
    """The 63-bit Philox key of a profile's noise."""
    return _splitmix64(seed & _MASK64) >> 1


def work_units(n_sigmas, samples, shard=(0, 1), done=()):
    """``(work id, unit index, sigma index, rows)`` of this shard not in ``done``, unit-major
    (every sigma advances together); the work id is ``unit * n_sigmas + sigma``."""
    index, count = shard
    done = set(done)
    for u in range(-(-samples // UNIT)):
        rows = min(UNIT, samples - u * UNIT)
        for i in range(n_sigmas):
            w = u * n_sigmas + i
            if w % count == index and w not in done:
                yield w, u, i, rows


def _draw_data(data, labels, rows, generator):
    """``rows`` data rows (and their labels) drawn with the unit's CPU generator."""
    if torch.is_tensor(data):
        idx = torch.randint(data.shape[0], (rows,), generator=generator)
        picked = data[idx.to(data.device)]
        return picked, (None if labels is None else labels[idx.to(labels.device)])
    return torch.as_tensor(data.sample(rows, generator=generator)), None


def _units(data, labels, units, seed, n_sigmas, device, dtype):
    """Per unit: its work id, data rows, their row ids, sigma index and labels (tensors on ``device``)."""
    gen = torch.Generator()
    for w, u, i, rows in units:
        x0, lab = _draw_data(data, labels, rows, gen.manual_seed(unit_seed(seed, i, u)))
        first = w * UNIT
        yield w, (x0.to(device=device, dtype=dtype, non_blocking=True),
                  torch.arange(first, first + rows, dtype=torch.int64, device=device),
                  torch.full((rows,), i, dtype=torch.long, device=device),
                  None if lab is None else lab.to(device, non_blocking=True))


def _cat(parts):
    return tuple(None if p[0] is None else torch.cat(p) for p in zip(*parts))


def _batches(units, limit):
    """Pack whole units into batches of at most ``limit[0]`` rows (read anew for every batch, so it may
    shrink); a unit larger than that is cut into batches of its own. Yields ``(rows, finished work ids)``:
    a batch whose list is empty ends inside a unit."""
    pending, ids, n = [], [], 0
    for w, unit in units:
        rows = unit[0].shape[0]
        if pending and n + rows > limit[0]:
            yield _cat(pending), ids
            pending, ids, n = [], [], 0
        if rows > limit[0]:
            lo = 0
            while lo < rows:  # the limit may shrink between chunks
                step = limit[0]
                yield tuple(None if t is None else t[lo:lo + step] for t in unit), ([w] if lo + step >= rows else [])
                lo += step
            continue
        pending.append(unit)
        ids.append(w)
        n += rows
    if pending:
        yield _cat(pending), ids


def _module_dtype(denoiser):
    """The floating dtype of a module's parameters, or None."""
    if isinstance(denoiser, torch.nn.Module):
        for p in denoiser.parameters():
            if p.is_floating_point():
                return p.dtype
    return None


def _pick_device(denoiser, data, device):
    if device is not None:
        return torch.device(device)
    if isinstance(denoiser, torch.nn.Module):
        for p in denoiser.parameters():
            return p.device
    return data.device if torch.is_tensor(data) else torch.device("cpu")


def _check_data(data, labels):
    """Validate ``data`` / ``labels``; return one example row (shape and dtype)."""
    if torch.is_tensor(data):
        if data.ndim < 2 or data.shape[0] < 1:
            raise InputError(f"data must be a tensor (N, *shape) with N >= 1, got shape {tuple(data.shape)}")
        if not data.is_floating_point():
            raise InputError(f"data must be floating point, got {data.dtype}")
        if labels is not None and (not torch.is_tensor(labels) or labels.shape[0] != data.shape[0]):
            raise InputError(f"labels must be a tensor with one row per data row ({data.shape[0]}), got "
                             f"{getattr(labels, 'shape', type(labels).__name__)}")
        return data[:1]
    if not hasattr(data, "sample"):
        raise InputError(f"data must be a tensor (N, *shape) or have .sample(n, generator), got {type(data).__name__}")
    if labels is not None:
        raise InputError("labels go with a tensor `data` row for row; a sampler object cannot take them")
    return torch.as_tensor(data.sample(1, generator=torch.Generator().manual_seed(0)))


def _describe(denoiser):
    return getattr(denoiser, "description", None) or type(denoiser).__name__


def _image_shape(shape):
    """(C, H, W) of image-shaped data for the spectral accumulator."""
    if len(shape) == 2:
        return (1, *shape)
    if len(shape) == 3:
        return tuple(shape)
    raise InputError(f"spectral=True needs image data of shape (H, W) or (C, H, W) per row, got {tuple(shape)}")


def _distributed():
    """``(rank, world size)`` of an initialised torch.distributed group, else None."""
    d = torch.distributed
    if d.is_available() and d.is_initialized() and d.get_world_size() > 1:
        return d.get_rank(), d.get_world_size()
    return None


def _is_oom(e):
    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", ())
    return isinstance(e, oom)


# ---------------------------------------------------------------- checkpoints


def _write_checkpoint(path, signature, acc, finished):
    """Accumulators and the finished work ids, written atomically (``.npz``, no pickles)."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".checkpoint-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, finished=np.array(sorted(finished), dtype=np.int64),
                     signature=np.array(json.dumps(signature)),
                     **{k: v.detach().cpu().numpy() for k, v in acc.items()})
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _read_checkpoint(path, signature):
    """The finished work ids and accumulators of a checkpoint written with the same ``signature``."""
    try:
        with np.load(path, allow_pickle=False) as z:
            saved = json.loads(str(z["signature"]))
            arrays = {k: z[k] for k in z.files if k not in ("signature", "finished")}
            finished = z["finished"].tolist()
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise CheckpointMismatch(f"checkpoint {path} is not readable ({type(e).__name__}: {e}); "
                                 "remove it to start afresh") from None
    differ = [k for k in sorted(set(saved) | set(signature)) if saved.get(k) != signature.get(k)]
    if differ:
        what = "; ".join(f"{k}: checkpoint {saved.get(k)!r}, this run {signature.get(k)!r}" for k in differ)
        raise CheckpointMismatch(f"checkpoint {path} was written with other arguments ({what}); "
                                 "use another checkpoint path or remove it")
    return finished, arrays


def profile(denoiser, data, sigmas=None, *, samples=1024, batch_size=256, seed=0, spectral=False, labels=None,
            device=None, backend="auto", progress=True, checkpoint=None, checkpoint_every=256,
            checkpoint_seconds=600.0, nonfinite="raise", shard=None):
    """Monte-Carlo profile of ``e(s) = E||D(x0 + s n, s) - x0||^2`` on a sigma grid (Stancevic et al. sec. 4).

    ``data`` is a tensor ``(N, *shape)`` sampled with replacement, or an object with
    ``.sample(n, generator=None)``. ``backend`` is ``auto`` (Triton kernels on CUDA, torch
    otherwise), ``triton`` or ``torch``. ``spectral=True`` also accumulates the error power per
    channel and frequency and the data power (image data). A mixture model from ``analytic`` (GMM,
    PointSet) used as the denoiser runs fused: noise, ideal denoiser and error in one kernel
    (not with ``spectral``).

    Long runs: ``checkpoint=PATH`` saves the accumulators and the finished work units every
    ``checkpoint_every`` units or ``checkpoint_seconds`` seconds and when anything (Ctrl-C too)
    stops the loop; a rerun with the same arguments resumes there. Under ``torch.distributed`` the
    ranks share the work units and all-reduce the accumulators (each rank checkpoints its own
    share to ``PATH.rank<r>-of-<w>``). A non-finite denoiser output raises, naming the sigma;
    ``nonfinite="skip"`` drops those samples instead and records how many. A CUDA out-of-memory
    error halves the batch and goes on. ``shard=(index, count)`` computes one share of the units;
    the shares' profiles merge into the whole.
    """
    grid = sigma_grid() if sigmas is None else _as_grid(sigmas)
    for name, v in (("samples", samples), ("batch_size", batch_size), ("checkpoint_every", checkpoint_every)):
        if isinstance(v, bool) or int(v) != v or v < 1:
            raise InputError(f"{name} must be a positive integer, got {v!r}")
    if nonfinite not in ("raise", "skip"):
        raise InputError(f"nonfinite must be 'raise' or 'skip', got {nonfinite!r}")
    dist = _distributed()
    if dist is not None and shard is not None:
        raise InputError("shard= and a torch.distributed group both split the work: use one of them")
    shard = dist or ((0, 1) if shard is None else tuple(shard))
    if len(shard) != 2 or not 0 <= shard[0] < shard[1]:
        raise InputError(f"shard must be (index, count) with 0 <= index < count, got {shard}")
    example = _check_data(data, labels)
    device = _pick_device(denoiser, data, device)
    kern = launchers(backend, device)
    dtype = torch.float64 if example.dtype == torch.float64 else torch.float32
    net_dtype = _module_dtype(denoiser) or dtype
    mixture = getattr(denoiser, "mixture", None) if labels is None and not spectral else None
    if mixture is not None:
        mixture = tuple(t.to(device) for t in mixture)
    n, samples = grid.size, int(samples)
    grid_dev = torch.as_tensor(grid, dtype=dtype, device=device)
    key = noise_key(seed)

    def zeros(*shape):
        return torch.zeros(*shape, dtype=torch.float64, device=device)

    acc = {"acc": zeros(4, n)}  # sum, sumsq, count, non-finite per sigma
    if spectral:
        image = _image_shape(example.shape[1:])
        acc.update(spec=zeros(n, *image), power=zeros(1, *image), power_acc=zeros(4, 1))
    pending = {k: torch.zeros_like(v) for k, v in acc.items()}  # rows of units not yet finished
    signature = {"version": CHECKPOINT_VERSION, "grid": grid.tolist(), "seed": int(seed), "samples": samples,
                 "unit": UNIT, "data_shape": list(example.shape[1:]), "model": _describe(denoiser),
                 "spectral": bool(spectral), "shard": list(shard), "nonfinite": nonfinite}
    if checkpoint is not None and dist is not None:
        checkpoint = f"{os.fspath(checkpoint)}.rank{shard[0]}-of-{shard[1]}"
    finished = []
    if checkpoint is not None and os.path.exists(checkpoint):
        finished, arrays = _read_checkpoint(checkpoint, signature)
        for k, v in arrays.items():
            acc[k].copy_(torch.as_tensor(v))
    units = list(work_units(n, samples, shard, finished))
    todo = sum(r for *_, r in units)
    done_rows = sum(min(UNIT, samples - (w // n) * UNIT) for w in finished)
    bar = tqdm(total=todo + done_rows, initial=done_rows, desc="profile", unit="sample", leave=False,
               disable=not progress or shard[0] != 0 and dist is not None)
    limit = [int(batch_size)]
    since, last_save = 0, time.monotonic()

    def run_rows(x0, rid, idx, lab):
        """Denoise and accumulate rows into ``pending``; on CUDA out-of-memory halve the batch and retry."""
        try:
            sigma = grid_dev[idx]
            if mixture is not None:
                kern.ideal_error(*mixture, x0, sigma, key, rid, idx, pending["acc"])
                return
            x = kern.perturb(x0, sigma, key, rid).to(net_dtype)
            out = denoiser(x, sigma) if lab is None else denoiser(x, sigma, lab)
            if not torch.is_tensor(out) or out.shape != x.shape:
                raise InputError(f"denoiser output has shape {tuple(getattr(out, 'shape', ()))}, "
                                 f"expected the input's {tuple(x.shape)}")
            kern.accumulate_error(out, x0, idx, pending["acc"], pending.get("spec"))
            if spectral:
                kern.accumulate_error(x0, torch.zeros_like(x0), torch.zeros_like(idx), pending["power_acc"],
                                      pending["power"])
        except Exception as e:
            if not _is_oom(e) or len(x0) == 1:
                raise
            if device.type == "cuda":
                torch.cuda.empty_cache()
            step = limit[0] = max(1, len(x0) // 2)
            warnings.warn(f"out of memory at batch size {len(x0)}: going on with {step}", stacklevel=3)
            for lo in range(0, len(x0), step):
                run_rows(*(None if t is None else t[lo:lo + step] for t in (x0, rid, idx, lab)))

    try:
        with torch.no_grad():
            for rows, ids in _batches(_units(data, labels, units, seed, n, device, dtype), limit):
                run_rows(*rows)
                bar.update(rows[0].shape[0])
                if not ids:
                    continue  # the batch ends inside a unit: its rows wait in pending
                for k in acc:
                    acc[k] += pending[k]
                    pending[k].zero_()
                finished += ids
                since += len(ids)
                if checkpoint is not None and (since >= checkpoint_every
                                               or time.monotonic() - last_save >= checkpoint_seconds):
                    _write_checkpoint(checkpoint, signature, acc, finished)
                    since, last_save = 0, time.monotonic()
    except BaseException:
        if checkpoint is not None:
            _write_checkpoint(checkpoint, signature, acc, finished)
        raise
    finally:
        bar.close()
    if checkpoint is not None and since:
        _write_checkpoint(checkpoint, signature, acc, finished)
    if dist is not None:
        for v in acc.values():
            torch.distributed.all_reduce(v)
    host = {k: v.cpu().numpy() for k, v in acc.items()}
    a = host["acc"]
    meta = {"seed": int(seed), "samples": samples, "unit": UNIT, "data_shape": list(example.shape[1:]),
            "model": _describe(denoiser), "dtype": str(net_dtype).replace("torch.", "")}
    if a[3].any():
        i = int(a[3].nonzero()[0][0])
        if nonfinite == "raise":
            raise InputError(f"denoiser output is not finite at sigma={grid[i]:.6g} "
                             f"({int(a[3, i])} of {int(a[2, i] + a[3, i])} samples; {int(a[3].sum())} in all); "
                             "nonfinite='skip' drops such samples instead")
        meta.update(dropped=int(a[3].sum()), dropped_per_sigma=a[3].astype(int).tolist())
    if limit[0] != batch_size:
        meta["batch_size_used"] = limit[0]
    if shard != (0, 1) and dist is None:
        meta["shard"] = list(shard)
    extra = {}
    if spectral:
        extra = dict(spectral_sum=host["spec"], power_sum=host["power"][0],
                     power_count=float(host["power_acc"][2, 0] + host["power_acc"][3, 0]))
    return Profile(grid, a[0], a[1], a[2], example[0].numel(), meta, **extra)
