"""The accumulators of a profile: one owner for their layout, from the kernels that fill them to the file.

A run accumulates *parts*, float64 tensors on its device (:class:`Sums`): ``acc``, the plain sums
``(PLAIN, sigmas)`` in the rows ``SUM, SUMSQ, COUNT, NONFINITE`` (the Triton kernels commit through
``kernels/stats.commit_rows`` and the torch twin through ``reference.add_row_errors``, both at these offsets;
``csrc/stats.cpp`` and ``csrc/ideal.cpp`` in this order); ``cv``, the control variates'
sums (their rows are ``control.row_sums``'s); and, for spectral runs, ``spec`` (sigmas, C, H, W), ``power``
(1, C, H, W), ``power_acc`` (its plain sums, one "sigma") and ``mean`` (C, H, W). The same names are the
checkpoint's arrays. A :class:`~entropic_fast.profile.Profile` holds the host side as *fields*: ``sum``,
``sumsq``, ``count`` and the optional ``FIELDS``, checked here (:func:`checked`), added here when profiles
merge (:func:`added`) and written here (:func:`to_file`, :func:`from_file`), each from the table :data:`PARTS`
(name, shape, when a run has it, field, scale, file key). Adding an accumulator is a row of :data:`PARTS`, its
fill in :meth:`Sums.fill`, its check in :func:`checked`, and the kernel that fills it.
"""
import dataclasses
from typing import Callable, Optional

import numpy as np
import torch

from . import checks
from . import control
from .control import controls_of, sums_size
from .errors import InputError

PLAIN = 4  # rows of the plain part
SUM, SUMSQ, COUNT, NONFINITE = range(PLAIN)  # the Triton commit (kernels/stats.commit_rows) and the torch twin read
# these; csrc/stats.cpp and csrc/ideal.cpp write rows 0-3 in this order (tests/test_kernels.py holds them equal)


# ---- the table of parts ---------------------------------------------------------------------------------------

def _per_sigma(v, factor):
    """A part of errors per sigma, scaled per sigma (what capping a profile does to it)."""
    return v * factor.reshape(-1, *[1] * (v.ndim - 1))


@dataclasses.dataclass(frozen=True)
class Part:
    """One accumulator part: ``name`` on the device and in checkpoints, its ``shape`` (of the grid size ``n``,
    the control rows ``q`` and the image ``(C, H, W)``), ``when`` a run has it, the Profile ``field`` it becomes
    (``host``: how, from the host array) and whether it enters a round's decision (``plain``), how it ``scale``s
    with the errors of a sigma (a function, or None: kept; ``drop``: removed), where it goes in a file (``file``:
    an array, or an entry of the meta). Merging adds every part; the checks are :func:`checked`'s."""
    name: str
    shape: Callable
    when: Callable
    field: Optional[str] = None
    host: Callable = None
    plain: bool = False
    scale: Optional[Callable] = None
    drop: bool = False
    file: str = "array"


def _always(q, image):
    return True


def _spectral_run(q, image):
    return image is not None


PARTS = (
    Part("acc", lambda n, q, im: (PLAIN, n), _always),  # the plain rows: sum, sumsq, count (fields())
    Part("spec", lambda n, q, im: (n, *im), _spectral_run, "spectral_sum", scale=_per_sigma),
    Part("power", lambda n, q, im: (1, *im), _spectral_run, "power_sum", host=lambda a: a[0]),
    Part("power_acc", lambda n, q, im: (PLAIN, 1), _spectral_run, "power_count", file="meta",
         host=lambda a: float(a[COUNT, 0] + a[NONFINITE, 0])),
    Part("mean", lambda n, q, im: im, _spectral_run, "mean_sum"),
    Part("cv", lambda n, q, im: (q, n), lambda q, image: q > 0, "control_sum", plain=True, drop=True),
)
FIELDS = tuple(p.field for p in PARTS if p.field)  # a Profile's optional fields
_BY_FIELD = {p.field: p for p in PARTS if p.field}


# ---- the device side: a run's parts -----------------------------------------------------------------------

class Sums:
    """A run's accumulators on its device, by part: filled per batch, committed, checkpointed, all-reduced, and
    turned into a Profile's fields. ``controls``: how many control variates; ``image``: (C, H, W) of a spectral
    run, else None."""

    def __init__(self, n, device, controls=0, image=None):
        self.n, self.device, self.controls, self.image = n, device, controls, image
        self.parts = {k: torch.zeros(s, dtype=torch.float64, device=device) for k, s in self.shapes().items()}

    def shapes(self):
        """The parts of this layout and their shapes (:data:`PARTS`)."""
        q = sums_size(self.controls) if self.controls else 0
        return {p.name: p.shape(self.n, q, self.image) for p in PARTS if p.when(q, self.image)}

    def like(self):
        """Zeroed parts of the same layout."""
        return Sums(self.n, self.device, self.controls, self.image)

    def zero_(self):
        for v in self.parts.values():
            v.zero_()

    def add_(self, other):
        for k, v in self.parts.items():
            v += other.parts[k]

    def fill(self, kern, out, x0, idx):
        """One batch of denoiser outputs ``out`` for the rows ``x0`` (at the grid indices ``idx``) into every part
        but the controls', by the launchers ``kern``."""
        p = self.parts
        kern.accumulate_error(out, x0, idx, p["acc"], p.get("spec"))
        if self.image is not None:  # the data's power and mean, as one more "sigma"
            kern.accumulate_error(x0, torch.zeros_like(x0), torch.zeros_like(idx), p["power_acc"], p["power"])
            p["mean"] += x0.reshape(-1, *self.image).sum(0, dtype=torch.float64)

    def fill_controls(self, controls, out, x0, idx, *, x, sigma, rows=None):
        """The same batch into the control variates' part, from the unrounded noisy rows ``x`` at ``sigma`` (the
        controls' means are exact for them); ``rows``, their indices in a data tensor, or None."""
        self.parts["cv"].index_add_(1, idx, control.batch_sums(controls, out, x, x0, sigma, rows))

    def fill_ideal(self, kern, mixture, x0, sigma, *, key, rid, idx):
        """The model-free path: noise, the mixture's ideal denoiser and its error in one launcher call."""
        kern.ideal_error(*mixture, x0, sigma, key, rid, idx, self.parts["acc"])

    def any_nonfinite(self):
        """True when some row's error was not finite (a host sync)."""
        return bool(self.parts["acc"][NONFINITE].any())


def from_estimate(mse, stderr, n):
    """``(sum, sumsq)`` of ``n`` samples whose mean is ``mse`` and whose standard error is ``stderr`` (no spread
    where ``n <= 1``): the one formula behind a profile given an estimate instead of samples."""
    return mse * n, np.where(n > 1, stderr**2 * n * (n - 1), 0.0) + mse**2 * n


def fields(arrays, plain_only=False):
    """A Profile's fields from a run's host arrays (``runtime.Resumable.arrays``): ``sum``, ``sumsq``, ``count`` and the
    optional ones the run has (``plain_only``: the plain sums and the control sums, for a round's decision)."""
    a = arrays["acc"]
    out = {"sum": a[SUM], "sumsq": a[SUMSQ], "count": a[COUNT]}
    out.update({p.field: p.host(arrays[p.name]) if p.host else arrays[p.name] for p in PARTS
                if p.field and p.name in arrays and (p.plain or not plain_only)})
    return out


def evaluations(arrays):
    """Rows evaluated (finite or not) in a run's host arrays."""
    a = arrays["acc"]
    return int(a[COUNT].sum() + a[NONFINITE].sum())


def rows_per_sigma(arrays):
    """Rows evaluated per sigma (finite or not), and those of the data-power part (None without one)."""
    a, pa = arrays["acc"], arrays.get("power_acc")
    return a[COUNT] + a[NONFINITE], None if pa is None else pa[COUNT, 0] + pa[NONFINITE, 0]


def nonfinite_message(grid, arrays):
    """The error a run raises for non-finite denoiser output: where first, how many."""
    a = arrays["acc"]
    i = int(np.flatnonzero(a[NONFINITE])[0])
    return (f"denoiser output is not finite at sigma={grid[i]:.6g} ({int(a[NONFINITE, i])} of "
            f"{int(a[COUNT, i] + a[NONFINITE, i])} samples so far; {int(a[NONFINITE].sum())} in all); "
            "nonfinite='skip' (--nonfinite skip) drops such samples instead")


# ---- the host side: a Profile's fields --------------------------------------------------------------------

def array(a, name, shape):
    """A float64 array of finite values >= 0 with the given shape, or an InputError naming it."""
    a = checks.finite_array(a, name)
    if shape is not None and a.shape != shape:
        raise InputError(f"{name} must have shape {shape}, got {a.shape}")
    if (a < 0).any():
        i = np.unravel_index(int(np.argmax(a < 0)), a.shape)
        raise InputError(f"{name} must be finite and >= 0, got {a[i]} at index {tuple(map(int, i))}")
    return a


def _spectral(spec, power, power_count, n, dim):
    """The spectral fields, checked: error power (sigmas, C, H, W), data power (C, H, W) and its count."""
    spec = array(spec, "spectral_sum", None)
    if spec.ndim != 4 or spec.shape[0] != n or int(np.prod(spec.shape[1:])) != dim:
        raise InputError(f"spectral_sum must have shape ({n}, C, H, W) with C*H*W = dim = {dim}, got {spec.shape}")
    if power is None:
        raise InputError("power_sum must be given with spectral_sum")
    power = array(power, "power_sum", spec.shape[1:])
    if isinstance(power_count, (bool, np.bool_)) or not isinstance(power_count, (int, float, np.number)) \
            or not (np.isfinite(power_count) and power_count > 0):
        raise InputError(f"power_count must be a finite number > 0 for a spectral profile, got {power_count!r}")
    return spec, power, float(power_count)


def _mean(mean_sum, power):
    if power is None:
        raise InputError("mean_sum goes with a spectral profile (spectral_sum, power_sum)")
    try:
        mean = np.array(mean_sum, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError("mean_sum must be numbers") from None
    if mean.shape != power.shape or not np.all(np.isfinite(mean)):
        raise InputError(f"mean_sum must be finite with shape {power.shape}, got {mean.shape}")
    return mean


def _control(control_sum, count, names):
    """The control sums, checked against their own invariants (``control.sums_size``'s rows: sum c, sum c_i c_j
    for i <= j, sum E c): one control per name in ``meta["control"]``, squares >= 0 with Cauchy-Schwarz against
    the sums, and all zero where a sigma has no samples."""
    cs = checks.finite_array(control_sum, "control_sum")  # centred controls: any sign
    n = count.size
    if cs.ndim != 2 or cs.shape[1] != n or controls_of(cs.shape[0]) is None:
        raise InputError(f"control_sum must have shape (q, {n}) with q = 2k + k(k+1)/2 for k controls, got {cs.shape}")
    k = controls_of(cs.shape[0])
    if names is not None and (not isinstance(names, list) or len(names) != k):
        raise InputError(f"control_sum holds the sums of {k} controls, meta['control'] names {names!r}")
    i, j = np.triu_indices(k)
    squares = cs[k:k + i.size][i == j]  # (k, sigmas): sum c_i^2
    if np.any(squares < 0):
        r, c = np.argwhere(squares < 0)[0]
        raise InputError(f"control_sum's sum of squares of control {r} is negative ({squares[r, c]}) at sigma index {c}")
    short = count * squares < cs[:k] ** 2 * (1 - 1e-9) - 1e-300
    if np.any(short):
        r, c = np.argwhere(short)[0]
        raise InputError(f"control_sum breaks Cauchy-Schwarz for control {r} at sigma index {c}: sum of squares "
                         f"{squares[r, c]}, sum {cs[r, c]}, count {count[c]}")
    if np.any(cs[:, count == 0] != 0):
        raise InputError("control_sum must be 0 where count is 0")
    return cs


def checked(given, count, dim, meta):
    """A Profile's optional fields (``FIELDS``; absent ones None), each checked against the profile's grid size,
    counts, dimension and meta; an unknown name is an InputError."""
    unknown = sorted(set(given) - set(FIELDS))
    if unknown:
        raise InputError(f"unknown profile fields {unknown}; a profile holds {', '.join(FIELDS)}")
    out = dict.fromkeys(FIELDS)
    if given.get("spectral_sum") is not None:
        out["spectral_sum"], out["power_sum"], out["power_count"] = _spectral(
            given["spectral_sum"], given.get("power_sum"), given.get("power_count"), count.size, dim)
    if given.get("mean_sum") is not None:
        out["mean_sum"] = _mean(given["mean_sum"], out["power_sum"])
    if given.get("control_sum") is not None:
        out["control_sum"] = _control(given["control_sum"], count, meta.get("control"))
    return out


def added(a, b):
    """Two profiles' optional fields, merged: every sum adds (a field one of them lacks is dropped)."""
    return {k: None if a[k] is None or b[k] is None else a[k] + b[k] for k in FIELDS}


def scaled(parts, factor):
    """Optional fields with the per-sigma errors scaled by ``factor`` (sigmas,): what capping a profile does to
    its spectra (the data's power, mean and the control sums are not errors of a sigma: the control sums go)."""
    out = {}
    for k, v in parts.items():
        part = _BY_FIELD[k]
        out[k] = None if part.drop or v is None else (part.scale(v, factor) if part.scale else v)
    return out


def to_file(parts):
    """``(arrays, meta entries)`` of a profile file for the optional fields (``power_count`` goes in the meta)."""
    arrays = {k: v for k, v in parts.items() if v is not None and _BY_FIELD[k].file == "array"}
    return arrays, {k: v for k, v in parts.items() if _BY_FIELD[k].file == "meta"}


def from_file(arrays, meta):
    """The optional fields of a profile file (popping the meta's entries)."""
    out = {k: arrays[k] for k in FIELDS if k in arrays and _BY_FIELD[k].file == "array"}
    out.update({k: meta.pop(k, None) for k in FIELDS if _BY_FIELD[k].file == "meta"})
    return out
