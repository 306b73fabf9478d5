"""The profile file: a versioned ``.npz`` (no pickles) of the grid, the plain sums, the optional fields and a JSON
record (the meta, with ``format_version`` and ``dim``), written atomically with a checksum of every member, and
read back with every check a damaged or foreign file needs (each a ``ProfileFormatError``)."""
import hashlib
import json
import os
import warnings
import zipfile

import numpy as np

from . import files, sums
from .errors import ProfileFormatError

FORMAT_VERSION = 3
# version 1 lacks the data mean of spectral profiles (mean_sum): P_k there is not centred; versions 1 and 2
# have no control-variate sums (control_sum): their mse is the plain mean
READS = (1, 2, 3)
ACCUMULATORS = ("sum", "sumsq", "count")


def _json_default(v):
    """numpy scalars and arrays in ``meta`` are written as plain numbers and lists."""
    if isinstance(v, (np.generic, np.ndarray)):
        return v.tolist()
    raise TypeError(f"meta value {v!r} of type {type(v).__name__} cannot be written as JSON")


def write(path, prof):
    """Write ``prof`` (a Profile) to ``path`` atomically; returns ``path``."""
    spec, entries = sums.to_file(prof.fields)
    meta = json.dumps({**prof.meta, "format_version": FORMAT_VERSION, "dim": prof.dim, **entries},
                      default=_json_default)
    members = dict(sigmas=prof.sigmas, sum=prof.sum, sumsq=prof.sumsq, count=prof.count, meta=np.array(meta), **spec)
    files.savez(path, **members, checksum=np.array(checksum(members)))
    return path


def _open(path, bad):
    """The archive of a profile file: a regular file, an ``.npz``, not a ``.npy``."""
    if os.path.exists(path) and not os.path.isfile(path):  # a FIFO would block the read forever
        raise bad("it is not a regular file")
    try:
        with open(path, "rb") as f:  # a profile is an .npz (zip) archive; a .npy header could claim gigabytes
            magic = f.read(6)
        if magic == b"\x93NUMPY":
            raise bad("it holds a single array (a .npy file), not the arrays of a profile")
        if magic[:2] != b"PK":
            raise bad("it is not an .npz archive")
        return np.load(path, allow_pickle=False)
    except (FileNotFoundError, ProfileFormatError):
        raise
    except (OSError, ValueError, EOFError, NotImplementedError, zipfile.BadZipFile) as e:
        raise bad(f"{type(e).__name__}: {e}") from None


def _members(z, bad):
    """``(members, stored checksum, meta)`` of an open archive."""
    try:
        with z:
            members = {k: z[k] for k in z.files}
            stored = members.pop("checksum", None)
            missing = [k for k in ("meta", "sigmas") + ACCUMULATORS if k not in members]
            if missing:
                raise bad(f"arrays {missing} are missing")
            text = members["meta"]
            if text.dtype.kind != "U" or text.ndim != 0:
                raise bad(f"meta is {text.dtype} {text.shape}, not a JSON string")
            meta = json.loads(str(text))
    except ProfileFormatError:
        raise
    except (OSError, ValueError, KeyError, EOFError, RecursionError, MemoryError, NotImplementedError,
            zipfile.BadZipFile) as e:  # MemoryError: a member claiming gigabytes; NotImplementedError: a
        raise bad(f"{type(e).__name__}: {str(e)[:200]}") from None  # compression method zipfile lacks
    if not isinstance(meta, dict):
        raise bad(f"meta is a JSON {type(meta).__name__}, not an object")
    return members, stored, meta


def read(path):
    """The constructor's arguments (``sigmas``, ``sum``, ``sumsq``, ``count``, ``dim``, ``meta`` and the optional
    fields) of a file written by :func:`write`; a damaged or foreign file is a ProfileFormatError."""
    def bad(what):
        return ProfileFormatError(f"{path} is not a readable entropic_fast profile: {what}")

    members, stored, meta = _members(_open(path, bad), bad)
    arrays = {k: members[k] for k in ("sigmas",) + ACCUMULATORS}
    spec = {k: members[k] for k in sums.FIELDS if k in members}
    for k, a in {**arrays, **spec}.items():
        if a.dtype.kind not in "fiu":
            raise bad(f"array {k!r} holds {a.dtype}, not numbers")
    version = meta.pop("format_version", None)
    if isinstance(version, bool) or version not in READS:  # true == 1 in Python, not a version
        raise ProfileFormatError(f"{path} has profile format version {version!r}; this library reads "
                                 f"versions {', '.join(map(str, READS))}")
    _verify(members, stored, path, bad)
    if "dim" not in meta:
        raise bad("meta has no 'dim'")
    dim = meta.pop("dim")
    return dict(arrays, dim=dim, meta=meta, **sums.from_file(spec, meta))


def checksum(members):
    """SHA-256 of a profile file's arrays: each name, dtype, shape and bytes, in name order (the meta included)."""
    h = hashlib.sha256()
    for name in sorted(members):
        a = np.ascontiguousarray(members[name])
        h.update(f"{name}\0{a.dtype.str}\0{a.shape}\0".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _verify(members, stored, path, bad):
    """Refuse a file whose arrays or meta differ from its ``stored`` checksum; note a file written without one."""
    if stored is None:
        warnings.warn(f"{path} carries no checksum (written by an older entropic_fast): damage to it cannot be "
                      "detected; load and save it again to add one", stacklevel=4)
        return
    if stored.dtype.kind != "U" or stored.ndim != 0 or str(stored) != checksum(members):
        raise bad("its contents do not match its checksum (the file is damaged)")
