"""The Monte-Carlo driver: per-sigma denoising error of a denoiser on data (DESIGN.md section 1).

Work is cut into units of at most ``UNIT`` samples keyed by ``(seed, sigma index, unit index)``:
each unit draws its data rows with its own generator, and every row has a fixed id from which the
kernels draw its noise (Philox keyed by seed, row id and element index). So the profile depends
neither on ``batch_size`` (a batch may mix units and sigmas), nor on the backend, nor on how the
units are shared out (``shard``). Accumulators stay on the device in float64 and the loop never
waits on the device.
"""
import torch
from tqdm.auto import tqdm

from .errors import InputError
from .grids import sigma_grid
from .kernels import launchers
from .profile import Profile, _as_grid

UNIT = 32
_MASK64 = (1 << 64) - 1


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


def work_units(n_sigmas, samples, shard=(0, 1)):
    """``(unit index, sigma index, rows)`` of this shard, unit-major (every sigma advances together)."""
    index, count = shard
    n_units = -(-samples // UNIT)
    for u in range(n_units):
        rows = min(UNIT, samples - u * UNIT)
        for i in range(n_sigmas):
            if (u * n_sigmas + i) % count == index:
                yield u, i, rows


def _draw_data(data, labels, rows, generator):
    """``rows`` data rows (and their labels) drawn with the unit's CPU generator."""
    if torch.is_tensor(data):
        idx = torch.randint(data.shape[0], (rows,), generator=generator)
        picked = data[idx.to(data.device)]
        return picked, (None if labels is None else labels[idx.to(labels.device)])
    return torch.as_tensor(data.sample(rows, generator=generator)), None


def _units(data, labels, units, seed, n_sigmas, device, dtype):
    """Per unit: data rows, their row ids, sigma index and labels, all on ``device``."""
    gen = torch.Generator()
    for u, i, rows in units:
        x0, lab = _draw_data(data, labels, rows, gen.manual_seed(unit_seed(seed, i, u)))
        first = (u * n_sigmas + i) * UNIT
        yield (x0.to(device=device, dtype=dtype, non_blocking=True),
               torch.arange(first, first + rows, dtype=torch.int64, device=device),
               torch.full((rows,), i, dtype=torch.long, device=device),
               None if lab is None else lab.to(device, non_blocking=True))


def _batches(units, batch_size):
    """Regroup unit tensors into batches of exactly ``batch_size`` rows (the last may be short)."""
    pending, n = [], 0
    for unit in units:
        pending.append(unit)
        n += unit[0].shape[0]
        while n >= batch_size:
            parts = [torch.cat(p) if p[0] is not None else None for p in zip(*pending)]
            yield tuple(None if p is None else p[:batch_size] for p in parts)
            rest = tuple(None if p is None else p[batch_size:] for p in parts)
            n -= batch_size
            pending = [rest] if n else []
    if n:
        yield tuple(torch.cat(p) if p[0] is not None else None for p in zip(*pending))


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


def profile(denoiser, data, sigmas=None, *, samples=1024, batch_size=256, seed=0, spectral=False, labels=None,
            device=None, backend="auto", progress=True, shard=None):
    """Monte-Carlo profile of ``e(s) = E||D(x0 + s n, s) - x0||^2`` on a sigma grid (Stancevic et al. sec. 4).

    ``data`` is a tensor ``(N, *shape)`` sampled with replacement, or an object with
    ``.sample(n, generator=None)``. ``backend`` is ``auto`` (Triton kernels on CUDA, torch
    otherwise), ``triton`` or ``torch``. ``spectral=True`` also accumulates the error power per
    channel and frequency and the data power (image data). A mixture model from ``analytic`` (GMM,
    PointSet) used as the denoiser runs fused: noise, ideal denoiser and error in one kernel
    (not with ``spectral``). ``shard=(index, count)``
    computes only that share of the work units; the shares' profiles merge into the whole.
    """
    grid = sigma_grid() if sigmas is None else _as_grid(sigmas)
    for name, v in (("samples", samples), ("batch_size", batch_size)):
        if int(v) != v or v < 1:
            raise InputError(f"{name} must be a positive integer, got {v!r}")
    shard = (0, 1) if shard is None else tuple(shard)
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
    n = grid.size
    grid_dev = torch.as_tensor(grid, dtype=dtype, device=device)
    key = noise_key(seed)
    acc = torch.zeros(4, n, dtype=torch.float64, device=device)  # sum, sumsq, count, non-finite
    if spectral:
        image = _image_shape(example.shape[1:])
        spec = torch.zeros(n, *image, dtype=torch.float64, device=device)
        power = torch.zeros(1, *image, dtype=torch.float64, device=device)
        power_acc = torch.zeros(4, 1, dtype=torch.float64, device=device)
    units = list(work_units(n, int(samples), shard))
    total = sum(r for _, _, r in units)
    bar = tqdm(total=total, desc="profile", unit="sample", disable=not progress, leave=False)
    batches = _batches(_units(data, labels, units, seed, n, device, dtype), int(batch_size))
    with torch.no_grad():
        for x0, rid, idx, lab in batches:
            sigma = grid_dev[idx]
            if mixture is not None:
                kern.ideal_error(*mixture, x0, sigma, key, rid, idx, acc)
            else:
                x = kern.perturb(x0, sigma, key, rid).to(net_dtype)
                out = denoiser(x, sigma) if lab is None else denoiser(x, sigma, lab)
                if not torch.is_tensor(out) or out.shape != x.shape:
                    raise InputError(f"denoiser output has shape {tuple(getattr(out, 'shape', ()))}, "
                                     f"expected the input's {tuple(x.shape)}")
                if spectral:
                    kern.accumulate_error(out, x0, idx, acc, spec)
                    kern.accumulate_error(x0, torch.zeros_like(x0), torch.zeros_like(idx), power_acc, power)
                else:
                    kern.accumulate_error(out, x0, idx, acc)
            bar.update(x0.shape[0])
    bar.close()
    acc = acc.cpu().numpy()
    if acc[3].any():
        i = int(acc[3].nonzero()[0][0])
        raise InputError(f"denoiser output is not finite at sigma={grid[i]:.6g} "
                         f"({int(acc[3, i])} of {int(acc[2, i] + acc[3, i])} samples; "
                         f"{int(acc[3].sum())} in all)")
    meta = {
        "seed": int(seed), "samples": int(samples), "unit": UNIT, "data_shape": list(example.shape[1:]),
        "model": _describe(denoiser), "dtype": str(net_dtype).replace("torch.", ""),
    }
    if shard != (0, 1):
        meta["shard"] = list(shard)
    extra = {}
    if spectral:
        extra = dict(spectral_sum=spec.cpu().numpy(), power_sum=power[0].cpu().numpy(),
                     power_count=float(power_acc[2, 0] + power_acc[3, 0]))
    return Profile(grid, acc[0], acc[1], acc[2], example[0].numel(), meta, **extra)
