"""``ef.profile``: the one entry point of the Monte-Carlo profile (Stancevic et al. sec. 4).

It reads the inputs (``protocol``), chooses the plan (``estimate.FixedPlan`` for ``samples=N``, the paper's
1024 per sigma; ``adaptive.AdaptivePlan`` otherwise) and runs it (``estimate.Run``).

Long runs: ``checkpoint=PATH`` saves the accumulators and the finished work units every ``checkpoint_every``
units or ``checkpoint_seconds`` seconds, and when anything stops the loop: an exception, SIGINT (Ctrl-C) or
SIGTERM, the signals being held back to the next unit boundary and raised there as
:class:`~entropic_fast.errors.Interrupted` after the checkpoint is written. A rerun with the same arguments
resumes there; the signature checked on resume holds fingerprints of the denoiser, the data and the labels
(see ``fingerprint``). Under ``torch.distributed`` the ranks share the work units and all-reduce the
accumulators (each rank checkpoints its own share to ``PATH.rank<r>-of-<w>``). A non-finite denoiser output
raises, naming the sigma, at the next checkpoint or check (every 10 s) or at the end; ``nonfinite="skip"``
drops such samples instead and records how many. A CUDA out-of-memory error halves the batch and goes on.
``shard=(index, count)`` computes one share of the units (fixed runs); the shares' profiles merge into the
whole.

Labels (a ``labels`` tensor, or what a dataset reader's ``sample`` returns) reach the denoiser as its third
positional argument, or, with ``labels_kwarg="cond"``, by that keyword (k-diffusion and ComfyUI-style wrappers
take conditioning so). A denoiser with a ``check_labels(labels)`` method (the EDM adapters) has all the labels
checked once, before the loop.

Throughput: on CUDA the next batch's rows are gathered, copied and perturbed in a worker thread while the
device runs the network; the progress bar counts samples per second. ``progress`` may also be the caller's own
bar, any object with ``update(rows)`` (ComfyUI's ``ProgressBar``). ``compile=True`` runs the denoiser through
``torch.compile`` with a fixed batch shape (a short last batch is padded to the full one and the padding
dropped), so it compiles once. ``channels_last=True`` hands 4-d inputs to the network in channels-last memory
format and converts a module denoiser's parameters to it (in place, as ``Module.to`` does).
"""
import warnings
from typing import Any, Callable, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from . import adaptive, estimate, protocol
from .errors import InputError
from .grids import sigma_grid
from .options import Checkpointing, Throughput
from .profile import Profile, as_grid

# The default grids: the paper's for a fixed run; 32 points for an adaptive one (its pilot is 32 x 16 rows, and its
# 16-step schedule is as accurate as on finer grids: benchmarks/results/time_to_accuracy.md).
FIXED_POINTS, ADAPTIVE_POINTS = 128, 32


def profile(denoiser: Callable, data: Any, sigmas: Optional[Sequence[float]] = None, *,
            samples: Optional[int] = None, tolerance: Optional[float] = None,
            steps: Union[int, Sequence[int]] = 16, kind: Union[str, Sequence[str]] = "rescaled",
            max_evaluations: int = 131072, pilot: int = 16, level: float = 0.95,
            control: Union[str, list, None] = "auto", labels: Any = None, labels_kwarg: Optional[str] = None,
            batch_size: int = 256, seed: int = 0, spectral: bool = False,
            device: Union[str, torch.device, None] = None, backend: str = "auto", progress: Any = True,
            checkpoint: Optional[str] = None, checkpoint_every: int = 256, checkpoint_seconds: float = 600.0,
            nonfinite: str = "raise", shard: Optional[Tuple[int, int]] = None, compile: bool = False,
            channels_last: bool = False, prior: Optional[Profile] = None) -> Profile:
    """Monte-Carlo profile of ``e(s) = E||D(x0 + s n, s) - x0||^2`` on a sigma grid: the same seed gives the same
    profile whatever the batch size, backend, number of ranks or CPU (long runs: this module's documentation).

    Parameters
    ----------
    denoiser : callable
        ``denoiser(x, sigma[, labels]) -> x0_hat`` or an ``ef.adapters`` adapter; an ``ef.analytic`` mixture runs fused.
    data : tensor, array or reader
        Rows ``(N, *shape)`` sampled with replacement, or an object with ``.sample(n, generator=None)`` (``ef.data``).
    sigmas : sequence of float, optional
        The grid (default ``sigma_grid(128)`` for a fixed run, ``sigma_grid(32)`` adaptive, the prior's with one).
    samples : int, optional
        Samples per sigma: a fixed run (the paper: 1024). Without it the run is adaptive:
    tolerance, steps, kind, level, max_evaluations, pilot, prior : adaptive runs
        Stop when every inner sigma's ``level`` band of the ``kind`` schedule of ``steps`` is within ``+-tolerance``
        (default 3%), or at ``max_evaluations`` rows (a warning); ``pilot`` samples per sigma first, or a ``prior``
        recorded while training (``ef.Recorder``) instead.
    control : {"auto", "wiener", "local", "both"}, list or None
        Control variates (``ef.control``); ``"auto"`` keeps them where they shorten the wall time to the tolerance.
        Fitted once per data tensor: a later call with the same tensor, unchanged, and the same request reuses them.
    labels, labels_kwarg : tensor or array, str, optional
        A label per data row, the denoiser's third argument (or the keyword ``labels_kwarg``, e.g. ``"cond"``).
    seed, spectral, nonfinite, shard : int, bool, {"raise", "skip"}, (int, int)
        The noise; the error power per frequency too; a non-finite output raises or is skipped; a fixed run's share.
    batch_size, device, backend, compile, channels_last : ``options.Throughput``
        How the network is fed (rows per call, where, kernels, ``torch.compile``, memory format): not the result.
    checkpoint, checkpoint_every, checkpoint_seconds : ``options.Checkpointing``
        A file saved every so many work units or seconds, and resumed from; signals raise ``ef.Interrupted``.
    progress : bool or object
        A progress bar, or the caller's own (any object with ``update(rows)``).

    Returns
    -------
    Profile
        ``mse`` and ``stderr`` per sigma, its sums; ``meta["evaluations"]``, and ``meta["adaptive"]``'s rounds.
    """
    grid, plan = _grid_and_plan(sigmas, samples=samples, tolerance=tolerance, steps=steps, kind=kind,
                                max_evaluations=max_evaluations, pilot=pilot, level=level, prior=prior, shard=shard)
    job = estimate.job(denoiser, protocol.Data(data, labels), grid, seed=seed, spectral=spectral, nonfinite=nonfinite,
                       shard=shard, labels_kwarg=labels_kwarg, control=control,
                       throughput=Throughput(batch_size, device, backend, compile, channels_last),
                       checkpointing=Checkpointing(checkpoint, checkpoint_every, checkpoint_seconds))
    prof = estimate.Run(job, plan).execute(progress)
    if isinstance(plan, adaptive.AdaptivePlan):
        adaptive.warn_short(prof, plan)
    return prof


def _grid_and_plan(sigmas, *, samples, tolerance, steps, kind, max_evaluations, pilot, level, prior, shard):
    """The run's grid and its plan (fixed or adaptive), the prior and the shard checked against them."""
    if prior is not None and not isinstance(prior, Profile):
        raise InputError(f"prior must be a Profile (one recorded while training, say), got {type(prior).__name__}")
    grid = _grid(prior.sigmas if sigmas is None and prior is not None else sigmas, samples)
    plan = adaptive.plan(samples, tolerance, steps, kind, max_evaluations=max_evaluations, pilot=pilot,
                         level=level, prior=prior)
    if prior is not None and not np.array_equal(prior.sigmas, grid):
        raise InputError(f"the prior's grid ({prior.sigmas.size} sigmas) is not this run's ({grid.size}): profile on "
                         "prior.sigmas (the default with a prior)")
    if shard is not None and isinstance(plan, adaptive.AdaptivePlan):
        raise InputError("an adaptive run decides from the whole run's sums: split it with torch.distributed, or "
                         "give samples= to run fixed shards")
    return grid, plan


MIN_POINTS = 3  # fewer sigmas make no curve: two are a range, which is what a caller passing two meant


def _grid(sigmas, samples):
    """The run's grid: the one given, checked, or the default of a fixed or an adaptive run."""
    if sigmas is not None:
        grid = as_grid(sigmas)
        if grid.size < MIN_POINTS:
            warnings.warn(f"sigmas is the grid the error is measured on, and {grid.size} sigmas ({grid.tolist()}) "
                          f"make no curve to integrate: for a grid over that range, pass "
                          f"sigmas=ef.sigma_grid(64, {grid[0]:g}, {grid[-1]:g})", stacklevel=3)
        return grid
    return sigma_grid(FIXED_POINTS if samples is not None else ADAPTIVE_POINTS)

