"""The error curve recorded from a training loop, at no extra network evaluations (Stancevic et al.: entropic time
"from the training loss").

Every training step already computes ``D(x0 + s n, s)`` at random sigmas; :class:`Recorder` takes each step's
sigmas and per-sample squared errors ``||D - x0||^2`` (``add``), on the training device and without a host sync,
and estimates ``e(s)`` at the knots of a sigma grid. The sigmas fall between knots, so a knot's estimate is not a
bin's mean (which is biased where ``e`` bends: it grows like ``s^2`` at small sigma). The error is divided by
``b(s) = d s^2 v / (s^2 + v)``, the error of the Gaussian with the data's variance ``v`` per value (exact for
Gaussian data, and the right shape at both ends for any data), and the ratio, smooth in ``u = log sigma``, is fitted
by least squares with a piecewise-linear curve (hat functions on the knots), from sums kept per interval
(``sum w t^m y^p`` with ``t`` the sample's place in its interval); the knot's error is ``b`` times the fit, its
standard error the sandwich (heteroscedasticity-robust) estimate from the same sums. Training weights change, so older steps may be forgotten: ``half_life`` (in ``add`` calls) decays every
sum by ``0.5 ** (1 / half_life)`` per call; the effective sample count per knot is Kish's ``(sum w)^2 / sum w^2``.
The result (``profile()``) is an ordinary Profile whose ``mse`` and ``stderr`` are these estimates.
"""
import math
import warnings

import numpy as np
import torch

from . import checks, sums
from .errors import InputError
from .grids import sigma_grid
from .profile import Profile

MAX_POINTS = 4096  # knots of the fitted curve: more is no finer a profile, and its fit is dense in them
_MW = [(m, p) for m in range(3) for p in range(2)]  # sum w t^m e^p: the fit's normal equations
_MW2 = [(m, p) for m in range(5) for p in range(3)]  # sum w^2 t^m e^p: its sandwich variance and Kish's count


class Recorder:
    """Record ``e(s)`` from training steps: ``rec.add(sigma, x0_hat, x0)`` (or ``errors=`` per sample) each step,
    ``rec.profile()`` when wanted. Sigmas outside ``[sigma_min, sigma_max]`` are counted, not used; non-finite
    errors are refused (at ``check()`` or ``profile()``, naming the step they came at).

    Parameters
    ----------
    sigma_min, sigma_max : float
        The grid's range: where training sigmas fall (knots they never reach are trimmed, with a warning).
    points : int
        Knots of the grid the errors are binned on.
    half_life : float, optional
        ``add`` calls after which a recorded error weighs half (default: every step weighs the same).
    data_variance, dim : float, int, optional
        The data's per-value variance and values per row: needed with ``add(sigma, errors=...)``, which sees
        no rows.
    device : str or torch.device, optional
        Where the running sums live (default the first batch's)."""

    def __init__(self, sigma_min=0.002, sigma_max=80.0, points=64, *, half_life=None, data_variance=None, dim=None,
                 device=None):
        points = checks.integer(points, "points", 2)
        if points > MAX_POINTS:
            raise InputError(f"points must be at most {MAX_POINTS} (knots of the fitted curve), got {points}")
        self.grid = sigma_grid(points, sigma_min, sigma_max)
        self.variance = None if data_variance is None else checks.real(data_variance, "data_variance", positive=True)
        self.half_life = None if half_life is None else checks.real(half_life, "half_life", positive=True)
        self.decay = 1.0 if half_life is None else 0.5 ** (1.0 / self.half_life)
        self.device, self.dim, self.steps = device, None if dim is None else checks.integer(dim, "dim", 1), 0
        self._u = None

    def _start(self, device, dim):
        """Allocate the sums on the first step's device."""
        self.device, self.dim = device, dim
        n = self.grid.size - 1
        self._u = torch.as_tensor(np.log(self.grid), dtype=torch.float64, device=device)
        self.sums = torch.zeros(n, len(_MW) + len(_MW2), dtype=torch.float64, device=device)
        self.outside = torch.zeros(2, dtype=torch.float64, device=device)  # below, above
        self.bad = torch.zeros(2, dtype=torch.float64, device=device)  # non-finite rows, the first step with one

    def add(self, sigma, x0_hat=None, x0=None, *, errors=None):
        """One training step: per-sample sigmas (B,) and either the denoised and clean rows or their squared errors."""
        sigma, err = self._errors(sigma, x0_hat, x0, errors)
        if self._u is None:
            self._start(sigma.device, self.dim)
            v = (torch.tensor(self.variance, dtype=torch.float64, device=sigma.device) if self.variance is not None
                 else x0.detach().to(torch.float64).flatten().var())  # on the device: no sync
            self._vbad = ~(torch.isfinite(v) & (v > 0))  # a constant or one-value first batch: said at profile()
            self._v = torch.where(self._vbad, torch.ones_like(v), v)
        self.steps += 1
        sigma = sigma.to(torch.float64)
        u = sigma.log()
        lo, hi = self._u[0], self._u[-1]
        usable = torch.isfinite(sigma) & (sigma > 0)  # NaN, inf or <= 0: an invalid row, not an outside one
        self.outside += torch.stack([(usable & (u < lo)).sum(), (usable & (u > hi)).sum()]).to(torch.float64)
        ok = (u >= lo) & (u <= hi)
        finite = torch.isfinite(err) & (err >= 0) & usable
        nbad = (~finite).sum().to(torch.float64)
        self.bad[1] = torch.where((self.bad[0] == 0) & (nbad > 0), float(self.steps), self.bad[1])
        self.bad[0] += nbad
        self._accumulate(u, torch.where(finite, err, 0.0) / self._shape(u), ok & finite)

    def _shape(self, u):
        """``b(s) = d s^2 v / (s^2 + v)`` at ``u = log s``: what the error is divided by before the fit."""
        s2 = torch.exp(2 * u)
        return self.dim * s2 * self._v / (s2 + self._v)

    def _errors(self, sigma, x0_hat, x0, errors):
        """``(sigma, per-sample squared error)`` as float64 tensors, shapes checked (naming the argument)."""
        sigma = torch.as_tensor(sigma)
        if sigma.ndim != 1:
            raise InputError(f"sigma must be one value per sample (B,), got shape {tuple(sigma.shape)}")
        if errors is None:
            if x0_hat is None or x0 is None:
                raise InputError("give x0_hat and x0 (the denoised and clean rows), or errors= (per-sample squared errors)")
            if x0_hat.shape != x0.shape or x0.shape[0] != sigma.shape[0]:
                raise InputError(f"x0_hat {tuple(x0_hat.shape)} and x0 {tuple(x0.shape)} must have the same shape, with "
                                 f"one row per sigma ({sigma.shape[0]})")
            if x0_hat.is_complex() or x0.is_complex():
                raise InputError(f"x0_hat and x0 must be real, got {x0_hat.dtype} and {x0.dtype}")
            if self.dim is not None and x0[0].numel() != self.dim:
                raise InputError(f"rows of {x0[0].numel()} values after rows of {self.dim}: every step's rows must have "
                                 "the same size")
            self.dim = self.dim or x0[0].numel()
            errors = (x0_hat.detach().to(torch.float64) - x0.detach().to(torch.float64)).square().flatten(1).sum(1)
        elif self.dim is None or (self.variance is None and self._u is None):
            raise InputError("errors= alone do not say the data's size and variance: give Recorder(dim=..., "
                             "data_variance=...), or x0_hat and x0 at the first add()")
        errors = torch.as_tensor(errors).detach()
        if errors.is_complex() or sigma.is_complex():
            raise InputError(f"errors and sigma must be real, got {errors.dtype} and {sigma.dtype}")
        errors = errors.to(torch.float64)
        if errors.shape != sigma.shape:
            raise InputError(f"errors must have one value per sigma ({tuple(sigma.shape)}), got {tuple(errors.shape)}")
        return sigma.detach().to(errors.device), errors

    def _accumulate(self, u, e, ok):
        """Decay the old sums and add this step's: per interval, ``w t^m e^p`` (w = 1 for new samples)."""
        j = torch.clamp(torch.searchsorted(self._u, u, right=True) - 1, 0, self._u.numel() - 2)
        t = (u - self._u[j]) / (self._u[j + 1] - self._u[j])
        w = ok.to(torch.float64)
        cols = [w * t**m * e**p for m, p in _MW] + [w * t**m * e**p for m, p in _MW2]
        if self.decay != 1.0:
            self.sums[:, :len(_MW)] *= self.decay
            self.sums[:, len(_MW):] *= self.decay**2
        self.sums.index_add_(0, j, torch.stack(cols, 1))

    def check(self):
        """Refuse invalid rows (errors non-finite or negative, sigmas not finite and > 0), naming the step of the
        first, and a first batch that gave no data variance (a host sync)."""
        if self._u is not None and float(self.bad[0]) > 0:
            raise InputError(f"{int(self.bad[0])} invalid training rows (errors non-finite or negative, or sigmas not "
                             f"finite and > 0), the first at step {int(self.bad[1])} (counted from the recorder's "
                             "first add)")
        if self._u is not None and bool(self._vbad):
            raise InputError("the first batch's x0 has no variance (constant, or a single value): give "
                             "Recorder(data_variance=...), the variance of one value of the data")

    def profile(self):
        """The recorded profile: ``mse`` and ``stderr`` the fit's at each knot, meta saying how it was recorded."""
        self.check()
        if self._u is None:
            raise InputError("nothing recorded yet: call add() from the training loop first")
        mw, mw2 = (self.sums[:, :len(_MW)].cpu().numpy(), self.sums[:, len(_MW):].cpu().numpy())
        ratio, se, n_eff = fit(mw, mw2, self.grid.size)
        b = self._shape(self._u).cpu().numpy()
        mse, se = ratio * b, se * b
        total = float(mw[:, 0].sum() ** 2 / max(mw2[:, 0].sum(), 1e-300))  # Kish's count of all samples
        return _as_profile(self.grid, mse, se, n_eff, self.dim or 1, self._meta(total))

    def _meta(self, total):
        below, above = (int(v) for v in self.outside.cpu().numpy())
        return {"recorded": {"steps": self.steps, "half_life": self.half_life, "decay": self.decay,
                             "data_variance": float(self._v),
                             "effective_samples": total, "outside_range": {"below": below, "above": above}}}


# ---- the fit ---------------------------------------------------------------------------------------------------

def _moments(m, keys):
    """``m[:, k]`` for each ``(power of t, power of e)`` in ``keys``, as a dict."""
    return {k: m[:, i] for i, k in enumerate(keys)}


def _bread_and_meat(mw, mw2, n):
    """The normal matrix ``A = sum w phi phi^T``, ``b = sum w phi e`` and the meat ``sum w^2 phi phi^T r^2`` expanded
    in the sums (``r = e - phi^T c`` needs ``c``: returned as a function of it), for hat functions
    ``phi_j = 1 - t``, ``phi_{j+1} = t`` on each interval ``j``."""
    a, q = _moments(mw, _MW), _moments(mw2, _MW2)
    A, b = np.zeros((n, n)), np.zeros(n)
    j = np.arange(n - 1)
    np.add.at(A, (j, j), a[0, 0] - 2 * a[1, 0] + a[2, 0])
    np.add.at(A, (j + 1, j + 1), a[2, 0])
    np.add.at(A, (j, j + 1), a[1, 0] - a[2, 0])
    np.add.at(A, (j + 1, j), a[1, 0] - a[2, 0])
    np.add.at(b, j, a[0, 1] - a[1, 1])
    np.add.at(b, j + 1, a[1, 1])

    def meat(c, fitted=False):
        # r = e - (c_j + (c_{j+1} - c_j) t) = e - alpha - beta t, so r^2 = e^2 - 2 e (alpha + beta t) + (alpha + beta t)^2
        # (fitted: the same sums of the fitted values squared, (alpha + beta t)^2, in place of r^2)
        al, be = c[:-1], c[1:] - c[:-1]
        def s(m):  # sum w^2 t^m r^2
            fit2 = al**2 * q[m, 0] + 2 * al * be * q[m + 1, 0] + be**2 * q[m + 2, 0]
            return fit2 if fitted else q[m, 2] - 2 * (al * q[m, 1] + be * q[m + 1, 1]) + fit2
        M = np.zeros((n, n))
        np.add.at(M, (j, j), s(0) - 2 * s(1) + s(2))
        np.add.at(M, (j + 1, j + 1), s(2))
        np.add.at(M, (j, j + 1), s(1) - s(2))
        np.add.at(M, (j + 1, j), s(1) - s(2))
        return M
    return A, b, meat


def fit(mw, mw2, n):
    """``(mse, stderr, effective samples)`` at the ``n`` knots from the interval sums; knots with no samples near
    them get ``nan`` and a count of 0."""
    A, b, meat = _bread_and_meat(mw, mw2, n)
    q = _moments(mw2, _MW2)
    j = np.arange(n - 1)
    w1, w2 = np.zeros(n), np.zeros(n)  # sum w phi, sum w^2 phi^2 per knot: Kish's count
    np.add.at(w1, j, _moments(mw, _MW)[0, 0] - _moments(mw, _MW)[1, 0])
    np.add.at(w1, j + 1, _moments(mw, _MW)[1, 0])
    np.add.at(w2, j, q[0, 0] - 2 * q[1, 0] + q[2, 0])
    np.add.at(w2, j + 1, q[2, 0])
    n_eff = np.where(w2 > 0, w1**2 / np.maximum(w2, 1e-300), 0.0)
    seen = np.flatnonzero(np.diag(A) > 1e-12 * max(np.diag(A).max(), 1e-300))
    c = np.full(n, np.nan)
    se = np.full(n, np.inf)
    if seen.size:
        sub = np.ix_(seen, seen)
        inv = np.linalg.pinv(A[sub])
        c[seen] = inv @ b[seen]
        se[seen] = _stderr(inv, meat, np.nan_to_num(c), sub)
    return c, se, n_eff


def _stderr(inv, meat, c, sub):
    """The knots' standard errors: the sandwich ``A^-1 M A^-1``, but never below what the errors' pooled relative
    spread gives (``v``, residuals over fitted values, over every sample: the same sandwich with ``v`` times the
    fitted value squared in place of each residual squared). With a few samples near a knot (the ends of a training
    distribution) the fit passes through them and the sandwich alone says ~0; the floor says what that many samples
    of this spread are worth."""
    m, fitted = meat(c), meat(c, fitted=True)
    v = max(m.sum(), 0.0) / max(fitted.sum(), 1e-300)  # hats sum to 1: sum w^2 r^2 and sum w^2 (phi^T c)^2
    sandwich = np.diag(inv @ m[sub] @ inv)
    floor = v * np.diag(inv @ fitted[sub] @ inv)
    return np.sqrt(np.maximum(np.maximum(sandwich, floor), 0.0))


def _as_profile(grid, mse, se, n_eff, dim, meta):
    """A Profile whose ``mse`` and ``stderr`` are the fit's: counts are the (rounded, at least 2) effective samples
    of each knot seen, 0 elsewhere; negative fits are clipped at 0 (the MMSE is not negative)."""
    seen = np.isfinite(mse) & (n_eff > 0)
    n = np.where(seen, np.maximum(np.round(n_eff), 2.0), 0.0)
    m = np.where(seen, np.maximum(mse, 0.0), 0.0)
    s = np.where(seen & np.isfinite(se), se, 0.0)
    total, sumsq = sums.from_estimate(m, s, n)
    keep = _covered(grid, seen, n)
    if keep != slice(None):
        meta = {**meta, "recorded": {**meta["recorded"], "trimmed_to": [float(grid[keep][0]), float(grid[keep][-1])]}}
    return Profile(grid[keep], total[keep], sumsq[keep], n[keep], dim, meta)


def _covered(grid, seen, n):
    """The run of consecutive knots with samples that holds the most of them: training sigmas (EDM's log-normal,
    say) reach the ends of a wide grid rarely or not at all, and a profile with empty knots gives no schedule.
    Said in a warning."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], seen.astype(int), [0]])))
    runs = list(zip(edges[::2], edges[1::2]))  # [start, stop) of each run of seen knots
    lo, hi = max(runs, key=lambda r: n[r[0]:r[1]].sum()) if runs else (0, 0)
    if hi - lo < 2:
        raise InputError(f"training steps reached {int(seen.sum())} knot(s) of the grid [{grid[0]:g}, {grid[-1]:g}] "
                         "in a row: record more steps, or a grid (sigma_min, sigma_max) where the training sigmas fall")
    if lo == 0 and hi == grid.size:
        return slice(None)
    warnings.warn(f"training sigmas reached the knots of [{grid[lo]:.4g}, {grid[hi - 1]:.4g}] of the grid "
                  f"[{grid[0]:.4g}, {grid[-1]:.4g}] (not those beyond, or not all): the profile covers that range, "
                  "and a schedule stays within it", stacklevel=3)
    return slice(int(lo), int(hi))


def half_life_for(steps, fraction=0.1):
    """The half-life (in steps) that keeps about the last ``fraction`` of ``steps`` steps' worth of samples."""
    return max(1.0, fraction * steps * math.log(2))


# ---- where trainers are ------------------------------------------------------------------------------------------

def lightning_callback(recorder, path=None, every_n_steps=None):
    """A Lightning ``Callback`` feeding ``recorder`` from each training step. The module's ``training_step`` returns
    a dict with ``loss`` and ``sigma`` (B,) and either ``x0_hat`` and ``x0`` or ``errors`` (B,); the callback adds
    them, and writes the recorded profile to ``path`` every ``every_n_steps`` steps and when training ends."""
    from .checks import optional
    pl = optional("lightning.pytorch", "lightning")

    class RecordErrors(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if not isinstance(outputs, dict) or "sigma" not in outputs:
                raise InputError("training_step must return a dict with 'loss', 'sigma' and 'x0_hat' and 'x0' (or "
                                 f"'errors') for the recorder, got {type(outputs).__name__}")
            recorder.add(outputs["sigma"], outputs.get("x0_hat"), outputs.get("x0"), errors=outputs.get("errors"))
            if path is not None and every_n_steps and trainer.global_step % every_n_steps == 0:
                self.save(trainer)

        def on_train_end(self, trainer, pl_module):
            if path is not None:
                self.save(trainer)

        def save(self, trainer):
            if trainer.is_global_zero:
                recorder.profile().with_meta(trainer_step=int(trainer.global_step)).save(path)
    return RecordErrors()
