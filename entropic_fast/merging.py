"""How two profiles merge: the rules that make a merge exact (the same grid, model, data and seed; disjoint work
units; neither exact nor adaptive), read from their typed provenance (``provenance``), and the merged record."""
import numpy as np

from . import sums
from .errors import InputError
from .units import n_units, overlap, union


def _units(prov):
    """A profile's record of its work units, checked: ``classes`` of ``[index, count]``, and ``samples``."""
    u, samples = prov.units, prov.samples
    if u is None or not isinstance(u.get("classes"), list):
        raise InputError("cannot merge a profile with no record of its work units (built by hand or by an "
                         "older version): overlap cannot be ruled out")
    ok = isinstance(samples, int) and samples >= 1 and all(
        isinstance(c, list) and len(c) == 2 and all(isinstance(v, int) for v in c) and 0 <= c[0] < c[1]
        for c in u["classes"])
    if not ok or not u["classes"]:
        raise InputError(f"cannot merge: the profile's record of its work units is malformed "
                         f"(units {u!r}, samples {samples!r})")
    return u


def _check_kinds(a, b):
    """Same grid, dimension and kind of profile; neither exact nor adaptive."""
    pa, pb = a.provenance, b.provenance
    if a.sigmas.shape != b.sigmas.shape or not np.array_equal(a.sigmas, b.sigmas):
        raise InputError("cannot merge profiles measured on different sigma grids")
    if a.dim != b.dim or pa.exact or pb.exact or a.spectral != b.spectral:
        raise InputError(f"cannot merge: dims {a.dim} and {b.dim}, exact {pa.exact} and {pb.exact}, "
                         f"spectral {a.spectral} and {b.spectral}")
    if pa.adaptive is not None or pb.adaptive is not None:
        raise InputError("cannot merge an adaptive profile: its plan was decided from its own sums; split a run "
                         "with torch.distributed (ranks share one plan), or merge fixed-samples shards")


def _check_runs(a, b):
    """The same run (seed, samples, model, data ...), the same non-finite rule, disjoint work units; their union."""
    pa, pb = a.provenance, b.provenance
    units = [_units(p) for p in (pa, pb)]
    for (k, va), (_, vb) in zip(pa.run, pb.run):
        if va != vb:
            raise InputError(f"cannot merge profiles of different runs: {k} {va!r} and {vb!r}")
    if units[0].get("nonfinite") != units[1].get("nonfinite"):
        raise InputError(f"cannot merge: nonfinite {units[0].get('nonfinite')!r} and {units[1].get('nonfinite')!r}")
    if overlap(units[0]["classes"], units[1]["classes"], n_units(a.sigmas.size, pa.samples)):
        raise InputError(f"cannot merge overlapping profiles: work units {units[0]['classes']} and "
                         f"{units[1]['classes']} (as [index, count] shares) have units in common; each unit "
                         "may be counted once")
    return {**units[0], "classes": union(units[0]["classes"], units[1]["classes"])}


def merged(a, b):
    """The constructor's arguments (``sum``, ``sumsq``, ``count``, ``dim``, ``meta`` and the optional fields) of
    the profile of both runs' work together: every sum adds, the records combine; an InputError naming what differs
    where the merge would not be exact."""
    _check_kinds(a, b)
    meta = {k: v for k, v in a.meta.items() if k not in ("shard", "batch_size_used")}
    meta["units"] = _check_runs(a, b)
    pa, pb = a.provenance, b.provenance
    if pa.control != pb.control or (a.control_sum is None) != (b.control_sum is None):
        raise InputError(f"cannot merge: control variates {a.meta.get('control')!r} and {b.meta.get('control')!r}")
    if "dropped" in a.meta or "dropped" in b.meta:
        per = a.provenance.dropped + b.provenance.dropped
        meta.update(dropped=int(per.sum()), dropped_per_sigma=per.tolist())
    return dict(sum=a.sum + b.sum, sumsq=a.sumsq + b.sumsq, count=a.count + b.count, dim=a.dim, meta=meta,
                **sums.added(a.fields, b.fields))
