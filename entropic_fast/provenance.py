"""What a profile's behaviour depends on, typed: read once from its record (``Profile.meta``, the JSON a file holds)
and checked, so that code asks ``prof.provenance.exact`` rather than looking up strings in a dict.

- ``exact``: a closed-form curve, not sampled (zero standard errors; never merged).
- ``adaptive``: the adaptive plan's record (its rounds and bands), or None for a fixed-samples run (an adaptive
  profile's plan was decided from its own sums: never merged).
- ``control``: the names of the control variates its ``control_sum`` rows belong to (empty without).
- ``units``: the shares of work units it holds (``[[index, count], ...]``) and its ``nonfinite`` rule, or None
  (a profile built by hand: it cannot be merged, overlap cannot be ruled out).
- ``run``: what two sampled profiles must share to be merged (seed, samples, unit, data shape, dtype,
  fingerprints), in the order a refusal names them.
- ``dropped``: rows dropped per sigma for non-finite output (zeros when none).
- ``tuned``: the intervals ``ef.tune`` measured on the model, by sampler, budget and kind (``schedules``
  uses them in place of the rule's); empty without.
"""
import dataclasses
from typing import Optional

import numpy as np

from .errors import InputError

RUN_KEYS = ("seed", "samples", "unit", "data_shape", "dtype", "fingerprints")  # what merging profiles share


@dataclasses.dataclass(frozen=True, eq=False)
class Provenance:
    """A profile's typed provenance (see the module's docstring)."""
    exact: bool = False
    adaptive: Optional[dict] = None
    control: tuple = ()
    units: Optional[dict] = None
    run: tuple = ()
    dropped: Optional[np.ndarray] = None
    tuned: dict = dataclasses.field(default_factory=dict)

    @property
    def samples(self):
        """Samples per sigma of a fixed run (the work-id space), or None."""
        return dict(self.run).get("samples")


def _flag(v, name):
    if not isinstance(v, (bool, np.bool_)):
        raise InputError(f"meta[{name!r}] must be true or false, got {v!r}")
    return bool(v)


def _names(v):
    """The controls' names (their count against the sums is checked by ``sums``)."""
    return tuple(map(str, v)) if isinstance(v, (list, tuple)) else ()


def _dropped(v, n):
    if v is None:
        return np.zeros(n, dtype=np.int64)
    a = np.asarray(v)
    if a.shape != (n,) or a.dtype.kind not in "iu" or np.any(a < 0):
        raise InputError(f"meta['dropped_per_sigma'] must be {n} whole numbers >= 0, got {str(v)[:80]}")
    return a.astype(np.int64)


def of(meta, n):
    """The provenance a record ``meta`` states for a profile of ``n`` sigmas, checked where behaviour reads it."""
    adaptive = meta.get("adaptive")
    if adaptive is not None and not isinstance(adaptive, dict):
        raise InputError(f"meta['adaptive'] must be the adaptive plan's record (a dict), got {adaptive!r}")
    units, tuned = meta.get("units"), meta.get("tuned") or {}
    if not isinstance(tuned, dict):
        raise InputError(f"meta['tuned'] must be ef.tune's record (a dict by sampler, budget and kind), got {tuned!r}")
    return Provenance(exact=_flag(meta.get("exact", False), "exact"), adaptive=adaptive,
                      control=_names(meta.get("control")), units=units if isinstance(units, dict) else None,
                      run=tuple((k, meta.get(k)) for k in RUN_KEYS), dropped=_dropped(meta.get("dropped_per_sigma"), n),
                      tuned=tuned)
