"""Control variates for the Monte-Carlo profile: linear (Wiener) denoisers whose errors have known means.

``W(x) = m + U diag(g) U^T (x - m)``, ``g = lam / (lam + s^2)``, is the optimal denoiser of Gaussian data
with mean ``m`` and covariance ``U diag(lam) U^T``. Its error ``L = ||W(x0 + s n) - x0||^2`` follows the
network's error ``E``, and its mean is known: so ``E - beta^T c``, with ``c`` the controls centred on
their known means, estimates ``E[E]`` without bias and with the variance cut by ``1 / (1 - R^2)``
(Glasserman, *Monte Carlo Methods in Financial Engineering*, sec. 4.1). Two controls:

- :class:`Wiener`, the data's own (its mean and covariance), centred on its exact mean
  ``sum_k lam_k s^2 / (lam_k + s^2)``. It follows the error at large sigma, where the data's spread
  dominates (measured on the digits model: variance cut 4x at sigma 1.5 to 200x at 20).
- :class:`LocalWiener`, the Wiener denoiser of the k-means cluster of ``x0``, centred on its mean
  given ``x0``: it follows the noise's part of the error at small sigma, where the global one barely
  helps (1.3x); both together 1.8x to 2.9x there. Its clusters may come from any sample of the data:
  the mean given ``x0`` is exact whatever they are.

For a data tensor (rows drawn with replacement) the moments are the rows' own, exactly.
"""
import numpy as np
import torch

from .errors import InputError

MAX_DIM = 4096  # eigendecompositions of d x d covariances
AUTO_DIM = 1024  # "auto" uses the controls up to this row size: about 8 d^2 flops per row, small beside a network
MAX_WORK = 2**36  # rows x d^2 of the data's exact covariance that "auto" computes (seconds on a CPU)
CLUSTERS = 16  # on the digits model 8, 16 and 32 clusters cut the variance alike (16 slightly most)
FIT_ROWS = 4096  # rows the clusters are fitted on (any rows do: the control's mean given x0 is exact)
RANK = 64  # directions kept per cluster (all of them up to this dimension)


def _flat64(t):
    return t.reshape(t.shape[0], -1).to(torch.float64)


def _projections(x, x0, basis, origin=None):
    """``(a, d)`` in float64: ``a = (x0 - origin) @ basis`` and ``d = (x - x0) @ basis``, the noise's part taken
    from the difference (exact at small sigma). The products are float64 too: in float32 a row's controls moved by
    1e-7 with the batch's shape (BLAS blocks), and their sums by 1e-6; in float64 by about 1e-16."""
    dt = torch.float64
    x0f = x0.reshape(x0.shape[0], -1).to(dt)
    diff = x.reshape(x.shape[0], -1).to(dt) - x0f
    b = basis.to(dt)
    centred = x0f if origin is None else x0f - origin.to(dt)
    return (centred @ b).to(torch.float64), (diff @ b).to(torch.float64)


def _wiener_mse(lam, s2):
    """``sum_k lam_k s^2 / (lam_k + s^2)`` per row of ``s2`` (the Wiener denoiser's mean error)."""
    return (lam * s2 / (lam + s2).clamp_min(1e-300)).sum(-1)


def _nearest(x, centres):
    """Index of the nearest centre of each row (squared distances by one matmul)."""
    return ((centres * centres).sum(1) - 2 * x @ centres.T).argmin(1)


class Wiener:
    """The Wiener denoiser of data with mean ``mean`` (d,) and covariance ``basis diag(lam) basis^T``."""
    name = "wiener"

    def __init__(self, mean, basis, lam):
        self.mean, self.basis, self.lam = mean, basis, lam

    @classmethod
    def of_rows(cls, rows):
        """From a data tensor (N, *shape): the mean and covariance of its rows (divisor N: the resampling
        distribution), eigendecomposed in float64."""
        x = _flat64(rows)
        _check_dim(x.shape[1])
        mean = x.mean(0)
        c = x - mean
        lam, basis = torch.linalg.eigh(c.T @ c / x.shape[0])
        return cls(mean, basis, lam.clamp_min(0.0))

    @classmethod
    def of_moments(cls, mean, cov):
        """From exact moments: ``mean`` (d,) and ``cov`` (d, d), or its diagonal (d,)."""
        mean = torch.as_tensor(mean, dtype=torch.float64).reshape(-1)
        cov = torch.as_tensor(cov, dtype=torch.float64)
        d = mean.numel()
        _check_dim(d)
        if cov.ndim == 1:
            return cls(mean, torch.eye(d, dtype=torch.float64), cov.clamp_min(0.0))
        lam, basis = torch.linalg.eigh(cov)
        return cls(mean, basis, lam.clamp_min(0.0))

    def to(self, device):
        return Wiener(self.mean.to(device), self.basis.to(device), self.lam.to(device))

    def expected(self, sigmas):
        """``E[L]`` at each sigma (float64 ndarray)."""
        s2 = torch.as_tensor(np.asarray(sigmas, np.float64), device=self.lam.device)[:, None] ** 2
        return _wiener_mse(self.lam, s2).cpu().numpy()

    def centred(self, x, x0, sigma):
        """``L - E[L]`` per row, ``x`` the noisy rows at ``sigma`` (one per row): in the eigenbasis
        ``W(x) - x0 = (g - 1) a + g d`` with ``a = U^T (x0 - mu)``, ``d = U^T (x - x0)``."""
        a, d = _projections(x, x0, self.basis, self.mean)
        s2 = sigma.to(torch.float64).reshape(-1, 1) ** 2
        g = self.lam / (self.lam + s2).clamp_min(1e-300)
        return (((g - 1) * a + g * d) ** 2).sum(1) - _wiener_mse(self.lam, s2)


class LocalWiener:
    """Per k-means cluster of the data, the Wiener denoiser of that cluster (its mean and top ``RANK``
    principal directions), applied to the rows whose clean ``x0`` is nearest that cluster's centre."""
    name = "local"

    def __init__(self, centres, bases, lam):
        self.centres, self.bases, self.lam = centres, bases, lam  # (C, d), (C, d, r), (C, r)
        self._stacked = bases.permute(1, 0, 2).reshape(bases.shape[1], -1)  # (d, C r): one matmul per batch
        self._centre_coef = torch.einsum("cd,cdr->cr", centres, bases)

    @classmethod
    def of_rows(cls, rows, clusters=CLUSTERS, iterations=20, seed=0):
        """K-means (Lloyd, from seeded distinct rows) on up to ``FIT_ROWS`` seeded rows, then each cluster's
        covariance eigendecomposed."""
        gen = torch.Generator().manual_seed(seed)
        pick = torch.randperm(rows.shape[0], generator=gen)[:FIT_ROWS].to(rows.device)
        x = _flat64(rows[pick])
        n, d = x.shape
        _check_dim(d)
        clusters = min(clusters, n)
        centres = x[:clusters].clone()
        for _ in range(iterations):
            member = (_nearest(x, centres)[:, None] == torch.arange(clusters, device=x.device)).to(x.dtype)
            size = member.sum(0)
            centres = torch.where(size[:, None] > 0, member.T @ x / size.clamp_min(1)[:, None], centres)
        label = _nearest(x, centres)
        r = min(d, RANK)
        bases, lams = [], []
        for c in range(clusters):
            xc = x[label == c] - centres[c]
            lam, u = torch.linalg.eigh(xc.T @ xc / max(xc.shape[0], 1))
            bases.append(u.flip(1)[:, :r])
            lams.append(lam.flip(0)[:r].clamp_min(0.0))
        return cls(centres, torch.stack(bases), torch.stack(lams))

    def to(self, device):
        return LocalWiener(self.centres.to(device), self.bases.to(device), self.lam.to(device))

    def centred(self, x, x0, sigma):
        """``L - E[L | x0]`` per row: with ``a = U^T (x0 - m)`` and ``d = U^T (x - x0)`` (``s z``, ``z`` standard
        normal given ``x0``), ``L = sum ((g - 1) a + g d)^2 + ||x0 - m||^2 - ||a||^2`` and its mean given ``x0``
        differs by ``sum g^2 d^2 + 2 g (g - 1) a d - s^2 g^2``."""
        b = x.shape[0]
        cluster = _nearest(_flat64(x0), self.centres)
        r = self.lam.shape[1]
        rows = torch.arange(b, device=x.device)
        a, d = _projections(x, x0, self._stacked)
        a = a.view(b, -1, r)[rows, cluster] - self._centre_coef[cluster]
        d = d.view(b, -1, r)[rows, cluster]
        lam = self.lam[cluster]
        s2 = sigma.to(torch.float64).reshape(-1, 1) ** 2
        g = lam / (lam + s2).clamp_min(1e-300)
        return (g * g * (d * d - s2) + 2 * g * (g - 1) * a * d).sum(1)


def _check_dim(d):
    if d > MAX_DIM:
        raise InputError(f"the Wiener control variates take rows of at most {MAX_DIM} values, got {d}: "
                         "profile with control=None")


def sums_size(k):
    """Rows of a profile's ``control_sum`` for ``k`` controls: ``sum c``, ``sum c_i c_j`` (i <= j), ``sum E c``."""
    return 2 * k + k * (k + 1) // 2


def controls_of(q):
    """The number of controls ``k`` whose sums take ``q`` rows, or None."""
    return next((k for k in range(1, 9) if sums_size(k) == q), None)


def row_sums(e, c):
    """``(q, B)``: per row, the terms of :func:`sums_size`'s sums for errors ``e`` (B,) and centred controls
    ``c`` (k, B)."""
    k = c.shape[0]
    i, j = torch.triu_indices(k, k, device=c.device)
    return torch.cat([c, c[i] * c[j], e[None] * c])


def estimate(sum_e, sumsq_e, count, control_sum):
    """``(mean, stderr)`` per sigma of the control-variate (regression) estimator from the sums of ``E``,
    ``E^2`` and ``control_sum`` (:func:`sums_size`); the plain mean where there are fewer than ``k + 2``
    samples."""
    q, m = control_sum.shape
    k = controls_of(q)
    n = np.asarray(count, np.float64)
    i, j = np.triu_indices(k)
    sc, scc, sec = control_sum[:k].T, control_sum[k:q - k].T, control_sum[q - k:].T  # (m, k), (m, pairs), (m, k)
    with np.errstate(invalid="ignore", divide="ignore"):
        me = sum_e / n
        mc = sc / n[:, None]
        cross = np.zeros((m, k, k))
        cross[:, i, j] = scc
        cross[:, j, i] = scc
        cov_cc = cross - n[:, None, None] * mc[:, :, None] * mc[:, None, :]
        cov_ce = sec - n[:, None] * me[:, None] * mc
        cov_ee = sumsq_e - n * me * me
        ok = n >= k + 2
        beta = np.zeros((m, k))
        if ok.any():
            beta[ok] = np.einsum("mij,mj->mi", np.linalg.pinv(cov_cc[ok], hermitian=True), cov_ce[ok])
        mean = np.where(ok, me - (beta * mc).sum(1), me)
        resid = np.where(ok, np.maximum(cov_ee - (beta * cov_ce).sum(1), 0.0) / np.maximum(n - 1 - k, 1),
                         np.maximum(cov_ee, 0.0) / np.maximum(n - 1, 1))
        se = np.where(n > 1, np.sqrt(resid / n), np.inf)
    return mean, se


# ---- which controls a run takes ----------------------------------------------------------------------------

CHOICES = ("auto", "wiener", "local", "both")


def _named(control):
    """A request, checked: a name of ``CHOICES``, or a list of control objects (returned as a list)."""
    if isinstance(control, (list, tuple)) and all(callable(getattr(c, "centred", None)) for c in control):
        return list(control)
    if not isinstance(control, str) or control not in CHOICES:
        raise InputError(f"control must be one of {', '.join(CHOICES)}, None, or a list of control objects; "
                         f"got {control!r}")
    return control


def _global(control, data):
    """The data's own Wiener control for a request, or None (``auto`` where it costs too much or has no moments)."""
    rows = data.source if data.is_tensor else None
    if rows is not None and (control != "auto" or rows.shape[0] * rows[0].numel() ** 2 <= MAX_WORK):
        return Wiener.of_rows(rows)
    if data.moments is not None:
        return Wiener.of_moments(*data.moments())
    if control != "auto":
        raise InputError(f"control={control!r} needs a data tensor, or data with exact moments() (the analytic "
                         f"models), for the data's Wiener denoiser; {type(data.source).__name__} has neither")
    return None


def choose(control, data, fused):
    """The control variates of a run (control objects), possibly none, for ``data`` (a ``protocol.Data``).

    ``wiener``: the data's Wiener denoiser (needs a data tensor, or data with exact ``moments()``);
    ``local``: per-cluster Wiener denoisers (from the data tensor, or ``FIT_ROWS`` of the sampler's own rows);
    ``both``; ``auto``: both for a data tensor or data with exact moments whose rows have at most ``AUTO_DIM``
    values (the data's own only where its covariance costs at most ``MAX_WORK``); none on the fused mixture path
    or for other samplers."""
    if control is None or (control == "auto" and fused):
        return []
    control = _named(control)
    if isinstance(control, list):
        return control
    if control == "auto" and not (data.is_tensor or data.moments is not None):
        return []  # a sampler of unknown cost: drawing rows for the clusters is the user's call ("local")
    if control == "auto" and data.dim > AUTO_DIM:
        return []
    out = [_global(control, data)] if control in ("wiener", "both", "auto") else []
    if control in ("local", "both", "auto"):
        rows = data.source if data.is_tensor else data.draw(FIT_ROWS, torch.Generator().manual_seed(0))[0]
        out.append(LocalWiener.of_rows(rows))
    return [c for c in out if c is not None]


def fitted(controls, data, example, grid, control):
    """The controls that fit the rows and whose assumptions hold: the noise at the smallest sigma must survive
    the rows' rounding (at 1e18, float32 or float64 rows lose noise of sigma 80, and a control's known mean no
    longer holds); ``"auto"`` drops them where it does not, an explicit request is refused naming the range."""
    if not controls:
        return controls
    rows = data.source if data.is_tensor else example
    top = max(abs(float(rows.max())), abs(float(rows.min())))  # once, before the loop; no |rows| copy
    ulp = top * torch.finfo(torch.float64 if example.dtype == torch.float64 else torch.float32).eps
    if ulp > 1e-3 * float(grid[0]):
        if control == "auto":
            return []
        raise InputError(f"control variates need the noise to survive the rows' rounding: the rows reach {top:.3g}, "
                         f"where {example.dtype} resolves {ulp:.3g}, and the grid starts at sigma {float(grid[0]):.3g}; "
                         f"use control=None, or a grid from sigma {1e3 * ulp:.3g}")
    x = example[:1].expand(2, *example.shape[1:]).contiguous()  # two rows: a control that does not fit fails here
    for c in controls:
        try:
            c.centred(x, x, torch.full((2,), float(grid[0]), dtype=torch.float64, device=x.device))
        except (RuntimeError, ValueError, IndexError) as e:
            raise InputError(f"control {getattr(c, 'name', c)!r} does not fit rows of shape "
                             f"{tuple(example.shape[1:])}: {e}") from None
    return controls
