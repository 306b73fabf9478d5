"""Checkpoints of a profile run: its signature, atomic writes, and strict validation on resume.

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
from .units import n_units, unit_rows

VERSION = 4  # 3: a data tensor's rows drawn per row id (units.data_rows); 4: four normals per Philox block


class CheckpointMismatch(InputError):
    """A checkpoint was written by a run with other arguments, or does not fit this run."""


def write(path, signature, acc, finished, plan=None, rounds=()):
    """Accumulators, the finished work ids and (adaptive runs) the plan and the rounds so far (evaluations and
    band of each), written atomically."""
    extra = {} if plan is None else {"plan": np.asarray(plan, np.int64),
                                     "rounds": np.array([[r["evaluations"], r["band"]] for r in rounds],
                                                        np.float64).reshape(-1, 2)}
    files.savez(path, finished=np.array(sorted(finished), dtype=np.int64), signature=np.array(json.dumps(signature)),
                **extra, **{k: v.detach().cpu().numpy() for k, v in acc.items()})


def _refuse(path, what):
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


def _check_signature(path, saved, signature):
    """Refuse a checkpoint written with other arguments (a raised adaptive budget excepted: the run goes on)."""
    if not isinstance(saved, dict):
        _refuse(path, "has no signature record")
    differ = [k for k in sorted(set(saved) | set(signature)) if saved.get(k) != signature.get(k)]
    if differ and not _budget_raised(saved, signature):
        what = "; ".join(f"{k}: checkpoint {saved.get(k)!r}, this run {signature.get(k)!r}" for k in differ)
        raise CheckpointMismatch(f"checkpoint {path} was written with other arguments ({what}); "
                                 "use another checkpoint path or remove it")


def read(path, signature, acc):
    """The finished work ids, accumulator arrays, and plan and rounds (None and [] unless adaptive) of a
    checkpoint written by this very run.

    ``acc`` maps each accumulator's name to the run's (zeroed) buffer: names, shapes and dtypes
    must match. The counts must equal the rows of the finished units, sigma by sigma."""
    try:
        with np.load(path, allow_pickle=False) as z:
            names = set(z.files)
            saved = json.loads(str(z["signature"])) if "signature" in names else None
            arrays = {k: z[k] for k in names if k != "signature"}
    except (OSError, ValueError, KeyError, EOFError, RecursionError, zipfile.BadZipFile, AttributeError) as e:
        raise CheckpointMismatch(f"checkpoint {path} is not readable ({type(e).__name__}: {e}); "
                                 "remove it to start afresh") from None
    _check_signature(path, saved, signature)
    adaptive = signature.get("adaptive") is not None
    expected = set(acc) | {"finished"} | ({"plan", "rounds"} if adaptive else set())
    if set(arrays) != expected:
        missing, extra = sorted(expected - set(arrays)), sorted(set(arrays) - expected)
        _refuse(path, f"does not hold this run's arrays (missing {missing}, unexpected {extra})")
    plan, rounds = arrays.get("plan"), arrays.get("rounds")
    if adaptive and (plan.dtype.kind not in "iu" or plan.shape != (len(signature["grid"]),) or plan.min() < 1):
        _refuse(path, f"has a plan of {plan.dtype} {plan.shape}, expected one unit count >= 1 per sigma")
    if adaptive and (rounds.dtype != np.float64 or rounds.ndim != 2 or rounds.shape[1] != 2
                     or not np.all(np.isfinite(rounds))):
        _refuse(path, f"has rounds of {rounds.dtype} {rounds.shape}, expected finite float64 (rounds, 2)")
    for k, buf in acc.items():
        a = arrays[k]
        if a.dtype != np.float64 or a.shape != tuple(buf.shape):
            _refuse(path, f"has array {k!r} of {a.dtype} {a.shape}, expected float64 {tuple(buf.shape)}")
        if not np.all(np.isfinite(a)):
            _refuse(path, f"has non-finite values in {k!r}")
    fin = arrays["finished"]
    n, samples, (index, count) = len(signature["grid"]), signature["samples"], signature["shard"]
    total = n_units(n, samples)
    if fin.ndim != 1 or fin.dtype.kind not in "iu":
        _refuse(path, f"has finished ids of {fin.dtype} {fin.shape}, expected a 1-D integer array")
    fin = fin.astype(np.int64)
    bad = fin[(fin < 0) | (fin >= total) | (fin % count != index)]
    if bad.size:
        _refuse(path, f"lists work ids outside this run's share (e.g. {bad[:3].tolist()})")
    if np.unique(fin).size != fin.size:
        _refuse(path, "lists a work id twice")
    if adaptive and np.any(fin // n >= plan[fin % n]):
        _refuse(path, "lists work ids outside its plan")
    rows = np.bincount(fin % n, weights=unit_rows(fin, n, samples), minlength=n)
    got = arrays["acc"][2] + arrays["acc"][3]
    if not np.array_equal(got, rows):
        i = int(np.argmax(got != rows))
        _refuse(path, f"counts {got[i]:g} samples at sigma index {i} but its finished units hold {rows[i]:g}")
    if "power_acc" in arrays and arrays["power_acc"][2, 0] + arrays["power_acc"][3, 0] != rows.sum():
        _refuse(path, "has a data-power count that does not match its finished units")
    return (fin.tolist(), {k: v for k, v in arrays.items() if k not in ("finished", "plan", "rounds")},
            None if plan is None else plan.astype(np.int64),
            [] if rounds is None else [{"evaluations": int(e), "band": float(b)} for e, b in rounds])
