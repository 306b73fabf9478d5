"""Checkpoints of a resumable run (a profile's; a comparison's through the same checks): its signature, atomic
writes, and strict validation on resume.

A checkpoint is an ``.npz`` (no pickles) holding the run's ``signature`` (JSON: every argument that
determines the result, fingerprints of the model, data and labels included), the ``finished``
work ids, and the accumulators, which hold exactly the rows of the finished units. Resuming
checks the signature field by field and every array against the run (names, shapes, ids in this
shard and in range, counts equal to the rows of the finished units), and refuses anything else.
"""
import json
import zipfile

import numpy as np

from . import files
from .errors import InputError

VERSION = 4  # 3: a data tensor's rows drawn per row id (units.data_rows); 4: four normals per Philox block


class CheckpointMismatch(InputError):
    """A checkpoint was written by a run with other arguments, or does not fit this run."""


def write(path, signature, arrays, finished, state=None):
    """Accumulator arrays (``sums.Sums.arrays``), the finished work ids and the plan's state (named arrays: an
    adaptive plan's units and rounds), written atomically."""
    files.savez(path, finished=np.array(sorted(finished), dtype=np.int64), signature=np.array(json.dumps(signature)),
                **(state or {}), **arrays)


def refuse(path, what):
    raise CheckpointMismatch(f"checkpoint {path} {what}; remove it to start afresh or use another path")


def _budget_raised(saved, signature):
    """True when two signatures differ only in an adaptive run's budget, raised: its finished units stay valid (a
    row's draws do not depend on the budget, and the larger id space holds the smaller)."""
    a, b = saved.get("adaptive"), signature.get("adaptive")
    if not (isinstance(a, dict) and isinstance(b, dict)):
        return False

    def rest(d, drop):
        return {k: v for k, v in d.items() if k not in drop}
    return rest(saved, ("samples", "adaptive")) == rest(signature, ("samples", "adaptive")) \
        and rest(a, ("max_evaluations",)) == rest(b, ("max_evaluations",)) \
        and isinstance(a.get("max_evaluations"), int) and b["max_evaluations"] >= a["max_evaluations"]


def check_signature(path, saved, signature, run="profile run"):
    """Refuse a checkpoint written with other arguments (a raised adaptive budget excepted: the run goes on); ``run``
    names what wrote it in the message."""
    if not isinstance(saved, dict):
        refuse(path, "has no signature record")
    differ = [k for k in sorted(set(saved) | set(signature)) if saved.get(k) != signature.get(k)]
    if differ and not _budget_raised(saved, signature):
        what = "; ".join(f"{k}: checkpoint {saved.get(k)!r}, this run {signature.get(k)!r}" for k in differ)
        raise CheckpointMismatch(f"checkpoint {path} was written by another {run}, with other arguments ({what}); "
                                 "use another checkpoint path or remove it")


def load(path):
    """``(signature or None, arrays)`` of a checkpoint file; anything unreadable is a CheckpointMismatch."""
    try:
        with np.load(path, allow_pickle=False) as z:
            names = set(z.files)
            saved = json.loads(str(z["signature"])) if "signature" in names else None
            return saved, {k: z[k] for k in names if k != "signature"}
    except (OSError, ValueError, KeyError, EOFError, RecursionError, zipfile.BadZipFile, AttributeError) as e:
        raise CheckpointMismatch(f"checkpoint {path} is not readable ({type(e).__name__}: {e}); "
                                 "remove it to start afresh") from None


def _check_arrays(path, arrays, shapes):
    """Every accumulator as the run's: float64, its shape, finite."""
    for k, shape in shapes.items():
        a = arrays[k]
        if a.dtype != np.float64 or a.shape != tuple(shape):
            refuse(path, f"has array {k!r} of {a.dtype} {a.shape}, expected float64 {tuple(shape)}")
        if not np.all(np.isfinite(a)):
            refuse(path, f"has non-finite values in {k!r}")


def check_finished(path, fin, units, share):
    """The finished ids: integers below ``units`` in this run's ``share`` (``(index, count)``: ids ``index`` mod
    ``count``), each once. Shared by every resumable run (profiles and comparisons)."""
    index, count = share
    if fin.ndim != 1 or fin.dtype.kind not in "iu":
        refuse(path, f"has finished ids of {fin.dtype} {fin.shape}, expected a 1-D integer array")
    fin = fin.astype(np.int64)
    bad = fin[(fin < 0) | (fin >= units) | (fin % count != index)]
    if bad.size:
        refuse(path, f"lists work ids outside this run's share (e.g. {bad[:3].tolist()})")
    if np.unique(fin).size != fin.size:
        refuse(path, "lists a work id twice")
    return fin


def check_arrays(path, arrays, shapes, extra=("finished",)):
    """The file holds exactly the run's arrays (``shapes``, and ``extra`` names), each float64 of its shape and
    finite. Shared by every resumable run."""
    expected = set(shapes) | set(extra)
    if set(arrays) != expected:
        missing, unexpected = sorted(expected - set(arrays)), sorted(set(arrays) - expected)
        refuse(path, f"does not hold this run's arrays (missing {missing}, unexpected {unexpected})")
    _check_arrays(path, arrays, shapes)


def read(path, signature, shapes, state=(), *, units, share, run="profile run"):
    """``(finished ids, accumulator arrays, the plan's state arrays)`` of a checkpoint written by this very run.

    ``shapes`` maps each accumulator part to its shape, ``state`` names the plan's arrays (checked by the plan),
    ``units`` is the size of the run's id space and ``share`` its ``(index, count)``: the signature, the arrays'
    names, shapes and dtypes, and the ids must match (the counts are the run's to check: ``runtime``)."""
    saved, arrays = load(path)
    check_signature(path, saved, signature, run)
    check_arrays(path, arrays, shapes, ("finished", *state))
    fin = check_finished(path, arrays["finished"], units, share)
    return fin, {k: arrays[k] for k in shapes}, {k: arrays[k] for k in state}
