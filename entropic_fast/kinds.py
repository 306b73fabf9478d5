"""The table of schedule kinds: one entry per kind, from which every list of kinds is derived.

Each :class:`Kind` says how its schedule is built from a profile (``build``), what it needs of the profile
(``needs``: only its sigma range, its error curve, its spectra, or a covariance spectrum), whether it has a
confidence band (``schedule_band`` and adaptive profiling take only those) and, for the time kinds, the
integrand of its time (``rate``, see ``times``); ``alias`` marks a second name of a kind. A new kind is one entry here (and, for a new time, its
integrand in ``times``).
"""
import dataclasses
from typing import Callable, Optional

import numpy as np

from . import checks, grids, peers, times
from .errors import InputError
from .gaussian import eigenvalues_of, gaussian_optimal


@dataclasses.dataclass(frozen=True)
class Kind:
    name: str
    build: Callable  # (prof, steps, sigma_min, sigma_max, smooth, cap, options) -> sigmas (descending, then 0)
    needs: str  # "range", "error", "spectra" or "covariance"
    band: bool  # its band follows from the profile's standard errors
    rate: Optional[Callable] = None  # a time kind's integrand in log sigma (times.*_rate)
    doc: str = ""
    alias: Optional[str] = None  # another name of the kind it names
    peer: bool = False  # a schedule other tools offer (``peers``), a baseline to compare ours with
    chooses: bool = False  # ours: it chooses its interval from the profile (``interval``) unless told otherwise


def _no_options(name, options, allowed=()):
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise InputError(f"kind {name!r} takes no options {unknown}" + (f" (it takes {', '.join(allowed)})" if allowed
                                                                         else ""))


def _time(name):
    """The builder of a time kind: the profile checked against the trivial bound, then equal steps of its time."""
    def build(prof, steps, smin, smax, smooth, cap, options):
        _no_options(name, options, ("data",))
        prof = times.guard(prof, options.get("data"), cap)
        return times.equal_steps(prof, steps, get(name).rate, name, smin, smax, smooth=smooth)
    return build


def _karras(prof, steps, smin, smax, smooth, cap, options):
    return grids.karras(steps, smin, smax, **options)


def _exponential(prof, steps, smin, smax, smooth, cap, options):
    return grids.exponential(steps, smin, smax, **options)


def _tangent(prof, steps, smin, smax, smooth, cap, options):
    options = dict(options)
    c = options.pop("c", None)
    return grids.tangent(steps, smin, smax, _tangent_scale(prof) if c is None else c, **options)


def _tangent_scale(prof):
    """Scale ``c`` of the Gaussian whose MMSE ``d s^2 c^2 / (s^2 + c^2)`` matches the profile at its largest sigma."""
    s, e, d = prof.sigmas[-1], max(float(prof.mse[-1]), 1e-300), prof.dim
    return float(np.sqrt(e * s**2 / (d * s**2 - e) if d * s**2 > e else e / d))


def _gaussian_optimal(prof, steps, smin, smax, smooth, cap, options):
    _no_options("gaussian-optimal", options, ("eigenvalues", "data", "sampler"))
    lam, weights = eigenvalues_of(prof, options.get("eigenvalues"), options.get("data"))
    return gaussian_optimal(steps, smin, smax, lam, sampler=options.get("sampler", "ddim"), weights=weights)


def _peer(name, shape, source=None):
    """The builder of a peer kind: ``shape(steps)``'s nonzero sigmas, made for the range ``source`` (default SD's),
    mapped onto the range (``peers.onto``)."""
    def build(prof, steps, smin, smax, smooth, cap, options):
        _no_options(name, options)
        t = np.asarray(shape(steps), np.float64)
        if t.size != steps or not np.all(np.diff(t) < 0):
            raise InputError(f"kind {name!r} gives {np.unique(t).size} distinct sigmas for {steps} steps: "
                             "ask for fewer steps")
        return peers.onto(t, smin, smax, source or peers.sd_range())
    return build


def _kl_optimal(prof, steps, smin, smax, smooth, cap, options):
    _no_options("kl_optimal", options)
    return peers.kl_optimal(steps, smin, smax)


def _polyexponential(prof, steps, smin, smax, smooth, cap, options):
    _no_options("polyexponential", options, ("rho",))
    rho = checks.real(options.get("rho", 1.0), "rho", positive=True)
    return peers.polyexponential(steps, smin, smax, rho)


TABLE = (
    Kind("entropic", _time("entropic"), "error", True, times.entropic_rate, "equal steps of entropic time",
         chooses=True),
    Kind("rescaled", _time("rescaled"), "error", True, times.rescaled_rate,
         "equal steps of rescaled entropic time", chooses=True),
    Kind("las", _time("las"), "error", True, times.las_integrand,
         "the loss-adaptive schedule (Aghapour et al.)", chooses=True),
    Kind("spectral", _time("spectral"), "spectra", False, times.spectral_rate,
         "spectral rescaled entropic time", chooses=True),
    Kind("edm", _karras, "range", True, doc="EDM / Karras (rho=7)"),
    Kind("karras", _karras, "range", True, doc="the same as edm", alias="edm"),
    Kind("exponential", _exponential, "range", True, doc="equal steps in log sigma"),
    Kind("tangent", _tangent, "error", True, doc="the Gaussian's optimal law, scale from the profile"),
    Kind("gaussian-optimal", _gaussian_optimal, "covariance", False,
         doc="minimises a sampler's KL on Gaussian data with the data's covariance spectrum", chooses=True),
    # the peers: what ComfyUI, A1111 and Align-Your-Steps users pick instead (``peers``)
    Kind("simple", _peer("simple", peers.simple), "range", True, doc="ComfyUI's simple", peer=True),
    Kind("normal", _peer("normal", peers.normal), "range", True, doc="ComfyUI's normal", peer=True),
    Kind("sgm_uniform", _peer("sgm_uniform", lambda k: peers.normal(k, sgm=True)), "range", True,
         doc="ComfyUI's sgm_uniform", peer=True),
    Kind("ddim_uniform", _peer("ddim_uniform", peers.ddim_uniform), "range", True, doc="ComfyUI's ddim_uniform",
         peer=True),
    Kind("beta", _peer("beta", peers.beta), "range", True, doc="ComfyUI's beta (alpha = beta = 0.6)", peer=True),
    Kind("linear_quadratic", _peer("linear_quadratic", lambda k: peers.linear_quadratic(k) * peers.sd_range()[1]),
         "range", True, doc="ComfyUI's linear_quadratic (in sigma / sigma_max: SD's top times it)", peer=True),
    Kind("kl_optimal", _kl_optimal, "range", True, doc="ComfyUI's and A1111's kl_optimal", peer=True),
    Kind("polyexponential", _polyexponential, "range", True, doc="A1111's polyexponential (rho=1)", peer=True),
    Kind("ays-sd15", _peer("ays-sd15", lambda k: peers.ays("sd15", k)), "range", True,
         doc="Align-Your-Steps, SD 1.5", peer=True),
    Kind("ays-sdxl", _peer("ays-sdxl", lambda k: peers.ays("sdxl", k)), "range", True,
         doc="Align-Your-Steps, SDXL", peer=True),
    Kind("ays-svd", _peer("ays-svd", lambda k: peers.ays("svd", k), peers.SVD_RANGE), "range", True,
         doc="Align-Your-Steps, Stable Video Diffusion", peer=True),
)
_BY_NAME = {k.name: k for k in TABLE}

KINDS = tuple(_BY_NAME)
TIME_KINDS = tuple(k.name for k in TABLE if k.rate is not None)
CLASSIC_KINDS = tuple(k.name for k in TABLE if k.rate is None and k.needs in ("range", "error") and not k.peer)
PEER_KINDS = tuple(k.name for k in TABLE if k.peer)
OUR_KINDS = tuple(k.name for k in TABLE if k.chooses)
BAND_KINDS = tuple(k.name for k in TABLE if k.band)
# what a client plugin offers (ComfyUI's node, the webui's setting): the kinds a profile without spectra gives, not
# the peers (the client has its own)
CLIENT_KINDS = tuple(k.name for k in TABLE if k.needs != "spectra" and not k.peer)


def get(name, among=KINDS, what="schedule kind"):
    """The entry of kind ``name``, refused with the known names if it is not one of ``among``."""
    if not isinstance(name, str) or name not in among:
        raise InputError(f"unknown {what} {name!r}; known kinds: {', '.join(among)}")
    return _BY_NAME[name]
