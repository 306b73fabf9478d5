"""Profile: per-sigma float64 accumulators of the denoising error, with merge and save/load."""
import json
import os
import tempfile
import zipfile

import numpy as np

from .errors import InputError, ProfileFormatError

FORMAT_VERSION = 1
ACCUMULATORS = ("sum", "sumsq", "count")


def _as_grid(sigmas):
    s = np.array(sigmas, dtype=np.float64)
    if s.ndim != 1 or s.size < 2:
        raise InputError(f"sigmas must be a 1-D grid of at least 2 values, got shape {s.shape}")
    if not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise InputError(f"sigmas must be finite and > 0, got {s[~(np.isfinite(s) & (s > 0))][:3]}")
    if np.any(np.diff(s) <= 0):
        i = int(np.argmin(np.diff(s)))
        raise InputError(f"sigmas must be strictly ascending, got {s[i]} then {s[i + 1]} at index {i + 1}")
    return s


class Profile:
    """Per-sigma sum, sum of squares and count of the per-sample squared error ``||D - x0||^2``.

    Spectral profiles also hold ``spectral_sum`` (sigmas, C, H, W), the summed error power
    ``|F(D - x0)_k|^2`` per channel and frequency (orthonormal 2-D DFT), and ``power_sum`` (C, H, W)
    with ``power_count``, the summed data power ``|F(x0)_k|^2``.
    """

    def __init__(self, sigmas, sum, sumsq, count, dim, meta=None, spectral_sum=None, power_sum=None,
                 power_count=None):
        self.sigmas = _as_grid(sigmas)
        n = self.sigmas.size
        acc = {}
        for name, a in zip(ACCUMULATORS, (sum, sumsq, count)):
            a = np.array(a, dtype=np.float64)
            if a.shape != (n,):
                raise InputError(f"{name} must have shape ({n},) like the grid, got {a.shape}")
            acc[name] = a
        self.sum, self.sumsq, self.count = acc["sum"], acc["sumsq"], acc["count"]
        if int(dim) != dim or dim < 1:
            raise InputError(f"dim must be a positive integer, got {dim!r}")
        self.dim = int(dim)
        self.meta = dict(meta or {})
        self.spectral_sum = self.power_sum = self.power_count = None
        if spectral_sum is not None:
            spec = np.array(spectral_sum, dtype=np.float64)
            power = np.array(power_sum, dtype=np.float64)
            if spec.ndim != 4 or spec.shape[0] != n or int(np.prod(spec.shape[1:])) != self.dim:
                raise InputError(f"spectral_sum must have shape ({n}, C, H, W) with C*H*W = dim = {self.dim}, "
                                 f"got {spec.shape}")
            if power.shape != spec.shape[1:]:
                raise InputError(f"power_sum must have shape {spec.shape[1:]}, got {power.shape}")
            if power_count is None or not power_count > 0:
                raise InputError(f"power_count must be > 0 for a spectral profile, got {power_count!r}")
            self.spectral_sum, self.power_sum, self.power_count = spec, power, float(power_count)

    @classmethod
    def from_curve(cls, sigmas, mse, dim, meta=None, spectra=None, data_power=None):
        """An exact profile from a known error curve ``e(sigma)`` (no sampling, zero stderr);
        optionally with exact per-frequency errors ``spectra`` (sigmas, C, H, W) and ``data_power``."""
        mse = np.array(mse, dtype=np.float64)
        if mse.ndim != 1 or not np.all(np.isfinite(mse)) or np.any(mse < 0):
            raise InputError(f"mse must be a 1-D array of finite values >= 0, got {mse}")
        if (spectra is None) != (data_power is None):
            raise InputError("spectra and data_power go together")
        return cls(sigmas, mse, mse**2, np.ones_like(mse), dim, {**(meta or {}), "exact": True},
                   spectra, data_power, None if spectra is None else 1.0)

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
    def exact(self):
        """True for a profile built from a closed-form curve rather than sampled."""
        return bool(self.meta.get("exact", False))

    @property
    def mse(self):
        """Mean squared error per sigma, summed over the ``dim`` dimensions."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.sum / self.count

    @property
    def stderr(self):
        """Standard error of ``mse`` per sigma (0 for exact curves, inf where count < 2)."""
        if self.exact:
            return np.zeros_like(self.sum)
        n = self.count
        with np.errstate(invalid="ignore", divide="ignore"):
            var = np.maximum(self.sumsq - self.sum**2 / n, 0.0) / (n - 1)
            return np.where(n > 1, np.sqrt(var / n), np.inf)

    def merge(self, other):
        """The profile of both runs' work together: accumulators add exactly."""
        if not isinstance(other, Profile):
            raise InputError(f"can only merge a Profile, got {type(other).__name__}")
        if self.sigmas.shape != other.sigmas.shape or not np.array_equal(self.sigmas, other.sigmas):
            raise InputError("cannot merge profiles measured on different sigma grids")
        if self.dim != other.dim or self.exact or other.exact or self.spectral != other.spectral:
            raise InputError(f"cannot merge: dims {self.dim} and {other.dim}, exact {self.exact} and {other.exact}, "
                             f"spectral {self.spectral} and {other.spectral}")
        meta = {k: v for k, v in self.meta.items() if k != "shard"}
        meta["merged"] = self.meta.get("merged", 1) + other.meta.get("merged", 1)
        spec = {}
        if self.spectral:
            spec = dict(spectral_sum=self.spectral_sum + other.spectral_sum, power_sum=self.power_sum + other.power_sum,
                        power_count=self.power_count + other.power_count)
        return Profile(self.sigmas, self.sum + other.sum, self.sumsq + other.sumsq, self.count + other.count,
                       self.dim, meta, **spec)

    def save(self, path):
        """Write an ``.npz`` file (arrays plus a JSON metadata record) atomically."""
        path = os.fspath(path)
        meta = json.dumps({**self.meta, "format_version": FORMAT_VERSION, "dim": self.dim,
                           "power_count": self.power_count})
        spec = {} if not self.spectral else dict(spectral_sum=self.spectral_sum, power_sum=self.power_sum)
        folder = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(prefix=".profile-", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, sigmas=self.sigmas, sum=self.sum, sumsq=self.sumsq, count=self.count,
                         meta=np.array(meta), **spec)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return path

    @classmethod
    def load(cls, path):
        """Read a file written by :meth:`save`; damaged or foreign files raise ProfileFormatError."""
        path = os.fspath(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                arrays = {k: z[k] for k in ("sigmas",) + ACCUMULATORS}
                spec = {k: z[k] for k in ("spectral_sum", "power_sum") if k in z.files}
        except FileNotFoundError:
            raise
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            raise ProfileFormatError(f"{path} is not a readable entropic_fast profile ({type(e).__name__}: {e})") from None
        version = meta.pop("format_version", None)
        if version != FORMAT_VERSION:
            raise ProfileFormatError(f"{path} has profile format version {version!r}; this library reads "
                                     f"version {FORMAT_VERSION}")
        dim, power_count = meta.pop("dim"), meta.pop("power_count", None)
        try:
            return cls(arrays["sigmas"], arrays["sum"], arrays["sumsq"], arrays["count"], dim, meta,
                       power_count=power_count, **spec)
        except InputError as e:
            raise ProfileFormatError(f"{path} holds an inconsistent profile: {e}") from None

    def summary(self):
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
        if self.spectral:
            lines.append(f"spectral  error power per channel and frequency, {tuple(self.power_sum.shape)}")
        if not self.exact:
            rel = np.nanmax(self.stderr / np.where(m > 0, m, np.nan))
            lines.append(f"stderr    at most {rel:.2%} of mse")
        lines += [f"{k:<9} {v}" for k, v in self.meta.items() if k != "exact"]
        return "\n".join(lines)

    def __repr__(self):
        return f"Profile({self.sigmas.size} sigmas in [{self.sigmas[0]:.4g}, {self.sigmas[-1]:.4g}], dim={self.dim})"
