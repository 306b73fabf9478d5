"""Profile: the storage of an estimate: per-sigma float64 sums of the denoising error (with optional spectral and
control-variate fields, ``sums``) and its typed provenance (``provenance``). How two merge is ``merging``'s; the
file format is ``profile_file``'s."""
import os
import warnings
from typing import Any, Optional, Sequence, Union

import numpy as np

from . import checks, merging, profile_file, provenance, sums
from .errors import InputError, ProfileFormatError
from .profile_file import FORMAT_VERSION, READS, checksum  # noqa: F401  (where they were)

ArrayLike = Union[np.ndarray, Sequence[float]]
ACCUMULATORS = profile_file.ACCUMULATORS


def as_grid(sigmas):
    try:
        s = np.array(sigmas, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"sigmas must be an array of numbers, got {type(sigmas).__name__}") from None
    if s.ndim != 1 or s.size < 2:
        raise InputError(f"sigmas must be a 1-D grid of at least 2 values, got shape {s.shape}")
    if not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise InputError(f"sigmas must be finite and > 0, got {s[~(np.isfinite(s) & (s > 0))][:3]}")
    if np.any(np.diff(s) <= 0):
        i = int(np.argmin(np.diff(s)))
        raise InputError(f"sigmas must be strictly ascending, got {s[i]} then {s[i + 1]} at index {i + 1}")
    return s


def _check_plain(total, sumsq, count):
    """The plain sums' invariants: whole counts, nothing where nothing was counted, and Cauchy-Schwarz."""
    if np.any(count != np.round(count)):
        i = int(np.argmax(count != np.round(count)))
        raise InputError(f"count must hold whole numbers, got {count[i]} at sigma index {i}")
    empty = (count == 0) & ((total != 0) | (sumsq != 0))
    if empty.any():
        i = int(np.argmax(empty))
        raise InputError(f"sum and sumsq must be 0 where count is 0, got sum {total[i]}, sumsq "
                         f"{sumsq[i]} at sigma index {i}")
    short = count * sumsq < total**2 * (1 - 1e-9)  # n sum(x^2) >= (sum x)^2, up to rounding
    if short.any():
        i = int(np.argmax(short))
        raise InputError(f"sumsq must be >= sum^2 / count, got sumsq {sumsq[i]} with sum {total[i]} "
                         f"and count {count[i]} at sigma index {i}")


def _adaptive_line(a):
    """The summary line of an adaptive run's record (a file's meta may hold anything: then it says so)."""
    try:
        goals = ", ".join(f"{k} {n} steps" for k, n in a.get("targets", []))
        return (f"adaptive  {a.get('level', 0.95):.0%} band +-{a['rounds'][-1]['band']:.2%} of every inner sigma "
                f"({goals}; asked +-{a.get('tolerance', float('nan')):.2%}) after {len(a['rounds'])} rounds")
    except (TypeError, KeyError, ValueError, IndexError, AttributeError) as e:
        return f"adaptive  (a record this library did not write: {type(e).__name__}: {e})"


def _decision_line(d):
    """The summary line of ``control="auto"``'s decision after an adaptive run's pilot."""
    try:
        if not d.get("measured", True):
            return "controls  kept (auto): resumed at the pilot's end, nothing timed"
        n, t, s = d["evaluations_left"], d["ms_per_row"], d["seconds_left"]
        return (f"controls  {'on' if d['on'] else 'off'} (auto, after the pilot): predicted to the tolerance "
                f"{n['with']:,} evaluations x {t['with']:.3g} ms = {s['with']:.3g} s with them, "
                f"{n['without']:,} x {t['without']:.3g} ms = {s['without']:.3g} s without")
    except (TypeError, KeyError, ValueError, AttributeError) as e:
        return f"controls  (a record this library did not write: {type(e).__name__}: {e})"


class Profile:
    """Per-sigma sum, sum of squares and count of the per-sample squared error ``||D - x0||^2``.

    Spectral profiles also hold ``spectral_sum`` (sigmas, C, H, W), the summed error power
    ``|F(D - x0)_k|^2`` per channel and frequency (orthonormal 2-D DFT), ``power_sum`` (C, H, W)
    with ``power_count``, the summed data power ``|F(x0)_k|^2``, and ``mean_sum`` (C, H, W), the
    summed data ``x0`` (for the centred power; None in files of format version 1).

    Profiles measured with control variates (``control``) also hold ``control_sum`` (q, sigmas): for
    ``k`` controls ``c`` centred on their known means, the sums of ``c``, of ``c_i c_j`` (i <= j) and of
    ``E c`` (``E`` the network's error; ``control.sums_size``); ``mse`` and ``stderr`` are then those
    of the control-variate estimator (``control.estimate``), ``sum / count`` stays the plain mean.
    """

    def __init__(self, sigmas: ArrayLike, sum: ArrayLike, sumsq: ArrayLike, count: ArrayLike, dim: int,
                 meta: Optional[dict] = None, **fields: Any) -> None:
        self.sigmas = as_grid(sigmas)
        n = self.sigmas.size
        self.sum, self.sumsq, self.count = (sums.array(a, name, (n,)) for name, a in zip(ACCUMULATORS, (sum, sumsq, count)))
        _check_plain(self.sum, self.sumsq, self.count)
        if isinstance(dim, (bool, np.bool_)) or not isinstance(dim, (int, np.integer, float, np.floating)) \
                or not (np.isfinite(dim) and dim >= 1) or int(dim) != dim:
            raise InputError(f"dim must be a positive integer, got {dim!r}")
        self.dim = int(dim)
        if meta is not None and not isinstance(meta, dict):
            raise InputError(f"meta must be a dict, got {type(meta).__name__}")
        self.meta = dict(meta or {})
        self.provenance = provenance.of(self.meta, n)
        self._fields = sums.checked(fields, self.count, self.dim, self.meta)
        for k, v in self._fields.items():  # spectral_sum, power_sum, power_count, mean_sum, control_sum
            setattr(self, k, v)

    @classmethod
    def from_curve(cls, sigmas: ArrayLike, mse: ArrayLike, dim: int, meta: Optional[dict] = None,
                   spectra: Optional[ArrayLike] = None, data_power: Optional[ArrayLike] = None,
                   data_mean: Optional[ArrayLike] = None) -> "Profile":
        """An exact profile from a known error curve ``e(sigma)`` (no sampling, zero stderr);
        optionally with exact per-frequency errors ``spectra`` (sigmas, C, H, W), ``data_power`` and
        ``data_mean`` (zero when not given)."""
        try:
            mse = np.array(mse, dtype=np.float64)
        except (TypeError, ValueError):
            raise InputError(f"mse must be numbers, got {mse!r}") from None
        if mse.ndim != 1 or not np.all(np.isfinite(mse)) or np.any(mse < 0):
            raise InputError(f"mse must be a 1-D array of finite values >= 0, got {mse}")
        if (spectra is None) != (data_power is None):
            raise InputError("spectra and data_power go together")
        mean = None if spectra is None else (np.zeros(np.shape(data_power)) if data_mean is None else data_mean)
        if spectra is not None:
            total = checks.finite_array(spectra, "spectra").reshape(len(mse), -1).sum(1) if np.ndim(spectra) == 4 \
                else None
            if total is not None and not np.allclose(total, mse, rtol=1e-6, atol=1e-12 * max(mse.max(), 1e-300)):
                raise InputError(f"spectra must sum over channels and frequencies to mse (Parseval), got sums "
                                 f"{total[:3].tolist()} against mse {mse[:3].tolist()}")
        spec = {} if spectra is None else dict(spectral_sum=spectra, power_sum=data_power, power_count=1.0,
                                               mean_sum=mean)
        return cls(sigmas, mse, mse**2, np.ones_like(mse), dim, {**(meta or {}), "exact": True}, **spec)

    @property
    def spectral(self):
        """True when the profile holds per-frequency errors and data power."""
        return self.spectral_sum is not None

    @property
    def spectra(self):
        """Mean error power per sigma, channel and frequency, (sigmas, C, H, W), or None."""
        if not self.spectral:
            return None
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.spectral_sum / self.count[:, None, None, None]

    @property
    def data_power(self):
        """Mean data power ``P_k = E|F(x0)_k|^2`` per channel and frequency, (C, H, W), or None."""
        return None if not self.spectral else self.power_sum / self.power_count

    @property
    def data_mean(self):
        """Mean data image ``E[x0]`` (C, H, W), or None (not spectral, or a version-1 file)."""
        return None if self.mean_sum is None else self.mean_sum / self.power_count

    @property
    def data_covariance(self):
        """Centred data power ``E|F(x0)_k|^2 - |F(E x0)_k|^2`` (the covariance spectrum), (C, H, W), or None.

        A version-1 file has no data mean: its raw power is returned, with a warning."""
        if not self.spectral:
            return None
        if self.mean_sum is None:
            warnings.warn("this spectral profile has no data mean (profile format version 1): its data power is "
                          "not centred; profile again to centre it", stacklevel=2)
            return self.data_power
        f = np.fft.fft2(self.data_mean, norm="ortho")
        return np.maximum(self.data_power - (f.real**2 + f.imag**2), 0.0)

    @property
    def exact(self):
        """True for a profile built from a closed-form curve rather than sampled."""
        return self.provenance.exact

    @property
    def fields(self):
        """The optional fields (``sums.FIELDS``; absent ones None), as a dict."""
        return dict(self._fields)

    @property
    def mse(self):
        """Mean squared error per sigma, summed over the ``dim`` dimensions (the control-variate estimate
        where the profile has one)."""
        if self.control_sum is not None:
            return np.maximum(self._controlled()[0], 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.sum / self.count

    @property
    def stderr(self):
        """Standard error of ``mse`` per sigma (0 for exact curves, inf where count < 2)."""
        if self.exact:
            return np.zeros_like(self.sum)
        if self.control_sum is not None:
            return self._controlled()[1]
        return self.plain_stderr

    @property
    def plain_stderr(self):
        """Standard error of the plain mean ``sum / count`` (without the control variate)."""
        n = self.count
        with np.errstate(invalid="ignore", divide="ignore"):
            var = np.maximum(self.sumsq - self.sum**2 / n, 0.0) / (n - 1)
            return np.where(n > 1, np.sqrt(var / n), np.inf)

    def _controlled(self):
        from .control import estimate
        return estimate(self.sum, self.sumsq, self.count, self.control_sum)

    @property
    def variance_ratio(self):
        """Per sigma, the plain mean's variance over the control-variate estimate's (None without one)."""
        if self.control_sum is None:
            return None
        with np.errstate(invalid="ignore", divide="ignore"):
            return (self.plain_stderr / self.stderr) ** 2

    def with_estimate(self, mse, stderr, spectra_factor=None):
        """A profile without control variate whose ``mse`` and ``stderr`` are the given ones (same grid,
        counts, spectra and meta; the spectra scaled per sigma by ``spectra_factor``): what the schedules perturb
        and clip."""
        n = self.count
        mse, stderr = np.maximum(mse, 0.0), np.where(np.isfinite(stderr), stderr, 0.0)
        total, sumsq = sums.from_estimate(mse, stderr, n)
        fields = sums.scaled(self._fields, np.ones_like(n) if spectra_factor is None else spectra_factor)
        return Profile(self.sigmas, total, sumsq, n, self.dim, self.meta, **fields)

    def with_meta(self, **entries: Any) -> "Profile":
        """The same profile with these entries added to (or replacing those of) its meta."""
        return Profile(self.sigmas, self.sum, self.sumsq, self.count, self.dim, {**self.meta, **entries},
                       **self._fields)

    def merge(self, other: "Profile") -> "Profile":
        """The profile of both runs' work together: accumulators add exactly.

        Both must be sampled profiles of the same grid, model, data and seed, holding disjoint work
        units (shards, or ranks): anything else is an InputError naming what differs (``merging``)."""
        if not isinstance(other, Profile):
            raise InputError(f"can only merge a Profile, got {type(other).__name__}")
        return Profile(self.sigmas, **merging.merged(self, other))

    def save(self, path: Union[str, os.PathLike]) -> str:
        """Write an ``.npz`` file (arrays plus a JSON metadata record) atomically; returns ``path``.

        The file gets the mode a plain ``open`` would give it; a symbolic link is followed (``profile_file``)."""
        return profile_file.write(checks.path(path, "path"), self)

    @classmethod
    def load(cls, path: Union[str, os.PathLike]) -> "Profile":
        """Read a file written by :meth:`save`; damaged or foreign files raise ProfileFormatError."""
        path = checks.path(path, "path")
        args = profile_file.read(path)
        try:
            return cls(**args)
        except InputError as e:
            raise ProfileFormatError(f"{path} holds an inconsistent profile: {e}") from None

    def summary(self) -> str:
        """A few lines describing the profile (grid, samples, dimension, error range)."""
        s, m = self.sigmas, self.mse
        kind = "exact curve" if self.exact else f"{int(self.count.min())}..{int(self.count.max())} samples per sigma"
        lines = [
            f"grid      {s.size} sigmas in [{s[0]:.4g}, {s[-1]:.4g}]",
            f"count     {kind}",
            f"dimension {self.dim}",
            f"mse       {m[0]:.4g} at sigma {s[0]:.4g} .. {m[-1]:.4g} at sigma {s[-1]:.4g}"
            f" (per dimension {m[-1] / self.dim:.4g})",
        ]
        zero = (self.count > 0) & (self.sum == 0)
        if zero.any():
            lines.append(f"zero      error exactly 0 at {int(zero.sum())} sigma(s), up to {s[zero].max():.4g}: they add "
                         "nothing to any time (an exact denoiser, or noise below the data's float resolution)")
        if self.spectral:
            lines.append(f"spectral  error power per channel and frequency, {tuple(self.power_sum.shape)}")
        if not self.exact:
            rel = np.nanmax(self.stderr / np.where(m > 0, m, np.nan))
            lines.append(f"stderr    at most {rel:.2%} of mse")
        if self.control_sum is not None:
            r = self.variance_ratio
            lines.append(f"control   {'+'.join(map(str, self.meta.get('control') or ['?']))} control variates: variance cut "
                         f"{np.nanmedian(r):.3g}x (median over sigmas; "
                         f"{np.nanmin(r):.3g}x to {np.nanmax(r):.3g}x)")
        a = self.provenance.adaptive
        if a is not None and a.get("rounds"):
            lines.append(_adaptive_line(a))
        if isinstance(self.meta.get("control_decision"), dict):
            lines.append(_decision_line(self.meta["control_decision"]))
        lines += [f"{k:<9} {v}" for k, v in self.meta.items()
                  if k not in ("exact", "adaptive", "control", "control_decision")]
        return "\n".join(lines)

    def __repr__(self):
        return f"Profile({self.sigmas.size} sigmas in [{self.sigmas[0]:.4g}, {self.sigmas[-1]:.4g}], dim={self.dim})"
