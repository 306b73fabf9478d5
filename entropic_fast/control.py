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
import weakref

import numpy as np
import torch

from .errors import InputError

MAX_DIM = 4096  # eigendecompositions of d x d covariances
AUTO_DIM = 1024  # "auto" uses the controls up to this row size: about 8 d^2 flops per row, small beside a network
MAX_WORK = 2**36  # rows x d^2 of the data's exact covariance that "auto" computes (seconds on a CPU)
CLUSTERS = 16  # on the digits model 8, 16 and 32 clusters cut the variance alike (16 slightly most)
FIT_ROWS = 4096  # rows the clusters are fitted on (any rows do: the control's mean given x0 is exact)
TABLE_VALUES = 2**22  # a data tensor of at most this many values gets per-row tables of x0's projections (32 MB)
RANK = 64  # directions kept per cluster (all of them up to this dimension)
RCOND = 1e-9  # the controls' regression drops directions of the correlation matrix below this share of the largest


def _flat64(t):
    return t.reshape(t.shape[0], -1).to(torch.float64)


def rows64(x, x0, sigma):
    """``(x0, diff, s2)`` in float64, once per batch for every control: the clean rows (B, d), the noise
    ``x - x0`` (B, d), taken from the difference (exact at small sigma), and ``sigma^2`` (B, 1). The controls'
    products are float64 too: in float32 a row's controls moved by 1e-7 with the batch's shape (BLAS blocks), and
    their sums by 1e-6; in float64 by about 1e-16."""
    x0f = _flat64(x0)
    return x0f, _flat64(x) - x0f, sigma.to(torch.float64).reshape(-1, 1) ** 2


def _wiener_mse(lam, s2):
    """``sum_k lam_k s^2 / (lam_k + s^2)`` per row of ``s2`` (the Wiener denoiser's mean error)."""
    return (lam * s2 / (lam + s2).clamp_min(1e-300)).sum(-1)


def _nearest(x, centres):
    """Index of the nearest centre of each row (squared distances by one matmul)."""
    return ((centres * centres).sum(1) - 2 * x @ centres.T).argmin(1)


class Wiener:
    """The Wiener denoiser of data with mean ``mean`` (d,) and covariance ``basis diag(lam) basis^T`` on its top
    directions (at most ``RANK``) and ``rest = (m, lam_rest)``: ``lam_rest`` times the identity on the ``m`` others
    (``m = 0``: every direction kept). The gain on the others is one, ``lam_rest / (lam_rest + s^2)``: a linear
    denoiser still, so its mean error is exact; on the top directions it is the data's Wiener denoiser."""
    name = "wiener"
    parts = ("data", "noise", "cross", "norm")

    def __init__(self, mean, basis, lam, table=None, rest=(0, 0.0)):
        self.mean, self.basis, self.lam, self.rest = mean, basis, lam, rest
        # per row of the data tensor: (a = U^T (x0 - mu) (N, r), the rest of ||x0 - mu||^2 (N,)), or None
        self.table = table

    @classmethod
    def of_rows(cls, rows):
        """From a data tensor (N, *shape): the mean and covariance of its rows (divisor N: the resampling
        distribution); up to ``RANK`` values every direction (eigendecomposed in float64), above the top ``RANK``
        (:func:`_principal`) and the rest's mean variance."""
        x = _flat64(rows)
        _check_dim(x.shape[1])
        mean = x.mean(0)
        c = x - mean
        d = x.shape[1]
        if d <= RANK:
            lam, basis = torch.linalg.eigh(c.T @ c / x.shape[0])
            return cls(mean, basis, lam.clamp_min(0.0))
        u, _ = _principal(c, RANK)
        basis = torch.linalg.qr(u[:, u.norm(dim=0) > 0]).Q  # orthonormal in float64: the rest is what they leave
        lam = ((c @ basis) ** 2).sum(0) / x.shape[0]
        rest = float((c * c).sum()) / x.shape[0] - float(lam.sum())
        return cls(mean, basis, lam, rest=_rest(rest, d - basis.shape[1]))

    @classmethod
    def of_moments(cls, mean, cov):
        """From exact moments: ``mean`` (d,) and ``cov`` (d, d), or its diagonal (d,)."""
        mean = torch.as_tensor(mean, dtype=torch.float64).reshape(-1)
        cov = torch.as_tensor(cov, dtype=torch.float64)
        d = mean.numel()
        _check_dim(d)
        if cov.ndim == 1:
            lam, basis = cov.clamp_min(0.0), torch.eye(d, dtype=torch.float64)
        else:
            lam, basis = torch.linalg.eigh(cov)
            lam = lam.clamp_min(0.0)
        if d <= RANK:
            return cls(mean, basis, lam)
        top = torch.argsort(lam, descending=True, stable=True)
        keep = top[:RANK]
        return cls(mean, basis[:, keep], lam[keep], rest=_rest(float(lam[top[RANK:]].sum()), d - RANK))

    def to(self, device):
        table = None if self.table is None else tuple(t.to(device) for t in self.table)
        return Wiener(self.mean.to(device), self.basis.to(device), self.lam.to(device), table, self.rest)

    def indexed(self, rows):
        """This control with its table for the data tensor ``rows``: a batch then projects only its noise."""
        x = _flat64(rows) - self.mean
        a = x @ self.basis
        return Wiener(self.mean, self.basis, self.lam, (a, (x * x).sum(1) - (a * a).sum(1)), self.rest)

    def expected(self, sigmas):
        """``E[L]`` at each sigma (float64 ndarray)."""
        s2 = torch.as_tensor(np.asarray(sigmas, np.float64), device=self.lam.device)[:, None] ** 2
        m, lam = self.rest
        return (_wiener_mse(self.lam, s2) + m * lam * s2[:, 0] / (lam + s2[:, 0]).clamp_min(1e-300)).cpu().numpy()

    def centred(self, x, x0, sigma):
        """:meth:`centred_rows` of the noisy rows ``x`` at ``sigma`` (one per row): ``(parts, B)``."""
        return self.centred_rows(*rows64(x, x0, sigma))

    def centred_rows(self, x0, diff, s2, rows=None):
        """The parts of ``L - E[L]`` per row of :func:`rows64`'s rows (``rows``: their indices in the data tensor of
        the table, if any), each of mean zero: in the eigenbasis ``W(x) - x0 = (g - 1) a + g d`` with
        ``a = U^T (x0 - mu)``, ``d = U^T (x - x0)``, so ``L = sum (g - 1)^2 a^2 + g^2 d^2 + 2 g (g - 1) a d`` and
        ``E[a^2] = lam``, ``E[d^2] = s^2``, ``E[a d] = 0``: ``data``, ``noise`` and ``cross`` are its three terms
        centred, ``norm`` is ``||x0 - mu||^2 - sum lam``. Apart, each gets its own coefficient in the regression
        (on the digits model 5% fewer evaluations to a 1% band than their sum). The rest's directions add the same
        terms with their one gain (:meth:`_rest_terms`)."""
        b = x0.shape[0]
        if rows is not None and self.table is not None:
            a, a_rest = (t.index_select(0, rows) for t in self.table)
            d = diff @ self.basis
        else:
            ad = torch.cat([x0 - self.mean, diff]) @ self.basis
            a, d, a_rest = ad[:b], ad[b:], None
        a2 = a * a
        norm = a2.sum(1) - self.lam.sum()
        if s2.device.type != "cpu":  # per row (no host sync)
            g = self.lam / (self.lam + s2)  # sigma > 0: the grid's
            h = g - 1
            out = torch.stack([(h * h * (a2 - self.lam)).sum(1), (g * g * (d * d - s2)).sum(1),
                               2 * torch.linalg.vecdot(g * h * a, d), norm])
        else:
            u, inverse = _distinct(s2)  # a batch holds a few sigmas: gains per sigma
            g = self.lam / (self.lam + u[:, None])
            h, g2 = g - 1, g * g
            terms = torch.stack([(a2 - self.lam) @ (h * h).T, (d * d) @ g2.T - u * g2.sum(1),
                                 2 * (a * d) @ (g * h).T])
            out = torch.cat([terms.gather(2, inverse.view(1, -1, 1).expand(3, -1, 1))[:, :, 0], norm[None]])
        return out if not self.rest[0] else out + self._rest_terms(x0, diff, s2, a, d, a_rest)

    def _rest_terms(self, x0, diff, s2, a, d, a_rest):
        """The four parts on the directions outside the basis, where every variance is ``lam_rest`` and the gain
        ``g = lam_rest / (lam_rest + s^2)`` one: ``(g - 1)^2 (|a_rest|^2 - m lam_rest)``, ``g^2 (|d_rest|^2 - m s^2)``,
        ``2 g (g - 1) a_rest . d_rest`` and ``|a_rest|^2 - m lam_rest``, each norm and product the whole row's less
        its part in the basis (exact means for any unit directions)."""
        m, lam = self.rest
        xc = x0 - self.mean
        if a_rest is None:
            a_rest = torch.linalg.vecdot(xc, xc) - (a * a).sum(1)
        d_rest = torch.linalg.vecdot(diff, diff) - (d * d).sum(1)
        cross = torch.linalg.vecdot(xc, diff) - torch.linalg.vecdot(a, d)
        s2 = s2[:, 0]
        g = lam / (lam + s2)
        h = g - 1
        data = a_rest - m * lam
        return torch.stack([h * h * data, g * g * (d_rest - m * s2), 2 * g * h * cross, data])


def _rest(variance, m):
    """``(m, lam_rest)``: the mean variance of the ``m`` directions outside the kept ones (rounding below zero: 0)."""
    return m, max(variance, 0.0) / m if m else 0.0


class LocalWiener:
    """Per k-means cluster of the data, the Wiener denoiser of that cluster (its mean and top ``RANK``
    principal directions), applied to the rows whose clean ``x0`` is nearest that cluster's centre."""
    name = "local"

    def __init__(self, centres, bases, lam, table=None):
        self.centres, self.bases, self.lam = centres, bases, lam  # (C, d), (C, d, r), (C, r)
        # per row of the data tensor: cluster (N,), a = U_c^T (x0 - m_c) (N, r), the rest of ||x0 - m_c||^2 (N,);
        # and over its rows: per cluster the mean of a^2 (C, r), each cluster's share (C,), the rest's mean
        self.table = table

    @property
    def parts(self):
        """``noise`` and ``cross``; with a data tensor's table also ``row`` (its mean over the rows is known)."""
        return ("noise", "cross") if self.table is None else ("noise", "cross", "row")

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
        centres, label = x[:clusters].clone(), None
        for _ in range(iterations):  # until no row changes its cluster (a host sync per iteration, while fitting)
            new = _nearest(x, centres)
            if label is not None and torch.equal(new, label):
                break
            label = new
            size = torch.bincount(label, minlength=clusters).to(x.dtype)
            total = _cluster_sums(x, label, clusters)
            centres = torch.where(size[:, None] > 0, total / size.clamp_min(1)[:, None], centres)
        label = _nearest(x, centres)
        r = min(d, RANK)
        bases, lams = zip(*(_principal(x[label == c] - centres[c], r) for c in range(clusters)))
        return cls(centres, torch.stack(bases), torch.stack(lams))

    def to(self, device):
        table = None if self.table is None else tuple(t.to(device) for t in self.table)
        return LocalWiener(self.centres.to(device), self.bases.to(device), self.lam.to(device), table)

    def indexed(self, rows):
        """This control with its table for the data tensor ``rows`` (cluster, ``a``, the rest of the norm; the means
        over the rows that centre the ``row`` part)."""
        x = _flat64(rows)
        cluster = _nearest(x, self.centres)
        a = self._own(x - self.centres[cluster], cluster, padded=False)
        rest = ((x - self.centres[cluster]) ** 2).sum(1) - (a * a).sum(1)
        k, n = self.lam.shape[0], x.shape[0]
        a2 = x.new_zeros(self.lam.shape).index_add_(0, cluster, a * a) / n
        share = torch.bincount(cluster, minlength=k).to(x.dtype) / n
        return LocalWiener(self.centres, self.bases, self.lam, (cluster, a, rest, a2, share, rest.mean()))

    def centred(self, x, x0, sigma):
        """:meth:`centred_rows` of the noisy rows ``x`` at ``sigma`` (one per row): ``(parts, B)``."""
        return self.centred_rows(*rows64(x, x0, sigma))

    def centred_rows(self, x0, diff, s2, rows=None, padded=None):
        """The parts of :meth:`centred` per row of :func:`rows64`'s rows (``rows``: their indices in the data tensor
        of the table), each in its own cluster's basis (:meth:`_own`). With ``a = U^T (x0 - m)`` and ``d = U^T
        (x - x0)`` (``s z``, ``z`` standard normal given ``x0``), ``L = sum ((g - 1) a + g d)^2 + rest``, ``rest =
        ||x0 - m||^2 - ||a||^2``; given ``x0`` its ``noise`` term ``g^2 (d^2 - s^2)`` and ``cross`` term
        ``2 g (g - 1) a d`` have mean zero, and ``row``, its mean given ``x0``, ``sum (g - 1)^2 a^2 + g^2 s^2 +
        rest``, has a known mean over the data tensor's rows: it follows how hard each row is (on the digits model,
        with ``norm``, 11% fewer evaluations to a 1% band)."""
        if rows is not None and self.table is not None:
            cluster, a, rest = (t.index_select(0, rows) for t in self.table[:3])
            d = self._own(diff, cluster, padded)
        else:
            cluster = _nearest(x0, self.centres)
            ad = self._own(torch.stack([x0 - self.centres[cluster], diff], 1), cluster, padded)
            a, d = ad[:, 0], ad[:, 1]
            rest = ((x0 - self.centres[cluster]) ** 2).sum(1) - (a * a).sum(1)
        lam = self.lam[cluster]
        g = lam / (lam + s2)
        h = g - 1
        out = [(g * g * (d * d - s2)).sum(1), 2 * torch.linalg.vecdot(g * h * a, d)]
        if self.table is not None:
            out.append((h * h * a * a + g * g * s2).sum(1) + rest - self._row_mean(s2))
        return torch.stack(out)

    def _row_mean(self, s2):
        """The mean over the data tensor's rows of the ``row`` part's ``E[L | x0]``, at each row's ``s^2`` (B, 1): on
        the CPU once per distinct sigma of the batch (a batch holds a few), on a GPU per row (no host sync)."""
        a2, share, rest = self.table[3:]
        s2, inverse = _distinct(s2) if s2.device.type == "cpu" else (s2[:, 0], None)
        g = self.lam / (self.lam + s2[:, None, None])  # (sigmas, C, r)
        out = ((g - 1) ** 2 * a2 + share[:, None] * g * g * s2[:, None, None]).sum((1, 2)) + rest
        return out if inverse is None else out[inverse]

    def _own(self, v, cluster, padded=None):
        """Rows ``v`` (B, ..., d) in their own cluster's basis (B, ..., r): packed by cluster into ``(C, width, ...,
        d)``, one batched product with the clusters' bases, each row read back. ``width`` is the largest cluster's
        size on the CPU (``d x r`` work per row, a host sync), the whole batch on a GPU (no sync, ``C`` times the
        work); ``padded`` overrides it (tests)."""
        b, d, (k, r) = v.shape[0], v.shape[-1], self.lam.shape
        counts = torch.bincount(cluster, minlength=k)
        order = torch.argsort(cluster, stable=True)
        pos = torch.empty_like(cluster)
        pos[order] = torch.arange(b, device=v.device) - (counts.cumsum(0) - counts)[cluster[order]]
        if padded is None:
            padded = v.device.type != "cpu"
        width = b if padded else int(counts.max())
        packed = v.new_zeros(k, width, *v.shape[1:])
        packed[cluster, pos] = v
        return (packed.view(k, -1, d) @ self.bases).view(k, width, *v.shape[1:-1], r)[cluster, pos]


def _distinct(s2):
    """The distinct ``sigma^2`` of a batch (B, 1) and each row's index among them (a host sync: CPU only)."""
    return torch.unique(s2[:, 0], return_inverse=True)


def _cluster_sums(x, label, clusters):
    """Per cluster the sum of its rows: by ``index_add_`` on the CPU, by a one-hot product on a GPU (atomic adds
    there would change the bits from run to run)."""
    if x.device.type == "cpu":
        return x.new_zeros(clusters, x.shape[1]).index_add_(0, label, x)
    return (label[:, None] == torch.arange(clusters, device=x.device)).to(x.dtype).T @ x


def _principal(xc, r):
    """The top ``r`` principal directions (d, r) of centred rows ``xc`` (n, d) and their variances (r,). The
    eigendecomposition in float32, of the covariance or, with fewer rows than values, of the Gram matrix (3x to 4x
    faster on 256-value rows); then in float64 each direction normalised and its variance taken as its Rayleigh
    quotient. A local control's mean given ``x0`` needs unit directions only, so it stays exact for this basis."""
    n, d = xc.shape
    if n < d:
        _, v = torch.linalg.eigh((xc @ xc.T).float())
        u = xc.T @ v.to(torch.float64).flip(1)[:, :r]
    else:
        _, u = torch.linalg.eigh((xc.T @ xc).float())
        u = u.to(torch.float64).flip(1)[:, :r]
    norm = u.norm(dim=0)
    u = torch.where(norm > 0, u / norm.clamp_min(1e-300), 0.0)
    u = torch.cat([u, u.new_zeros(d, r - u.shape[1])], 1)  # fewer rows than directions: zero ones, weight 0
    return u, ((xc @ u) ** 2).sum(0) / max(n, 1)


def _check_dim(d):
    if d > MAX_DIM:
        raise InputError(f"the Wiener control variates take rows of at most {MAX_DIM} values, got {d}: "
                         "profile with control=None")


def names(controls):
    """The names of the scalar controls of ``controls``, one per part (``wiener.noise``; a control object without
    ``parts`` is one scalar, by its ``name``): what a profile's meta and a checkpoint record."""
    return [f"{c.name}.{p}" if p else c.name for c in controls for p in getattr(c, "parts", None) or (None,)]


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


def batch_sums(controls, out, x, x0, sigma, rows=None):
    """``(q, B)``: :func:`row_sums` of one batch, the denoiser's outputs ``out`` for the rows ``x0`` (noisy ``x`` at
    ``sigma``; ``rows``, their indices in the data tensor, or None); a row whose error is not finite adds nothing.
    The rows in float64 once, for every control."""
    x0f, diff, s2 = rows64(x, x0, sigma)
    e = _flat64(out) - x0f
    e = torch.linalg.vecdot(e, e)
    ok = torch.isfinite(e)
    c = torch.cat([(ctl.centred_rows(x0f, diff, s2, rows) if hasattr(ctl, "centred_rows") else
                    ctl.centred(x, x0, sigma)).reshape(-1, x0f.shape[0]) for ctl in controls])
    return torch.where(ok, row_sums(torch.where(ok, e, 0.0), c), 0.0)


def estimate(sum_e, sumsq_e, count, control_sum):
    """``(mean, stderr)`` per sigma of the control-variate (regression) estimator from the sums of ``E``,
    ``E^2`` and ``control_sum`` (:func:`sums_size`); the plain mean where there are fewer than ``k + 2``
    samples. The standard error is the regression's at the controls' known mean, ``s^2 (1/n + cbar^T S^-1 cbar)``
    (``S`` the controls' centred sums of squares): with coefficients estimated from few samples (an adaptive
    run's pilot) the mean varies more than ``s^2 / n`` says, by ``(n - 2) / (n - k - 2)`` on average (Lavenberg and
    Welch 1981); ``s^2 / n`` alone left 3% bands of the digits model covering 84% of inner sigmas, not 95%."""
    mean, resid, lev, n = _regression(sum_e, sumsq_e, count, control_sum)
    with np.errstate(invalid="ignore", divide="ignore"):
        return mean, np.where(n > 1, np.sqrt(resid * (1 / n + lev)), np.inf)


def row_variance(sum_e, sumsq_e, count, control_sum):
    """The residual variance per row, ``s^2``: what more rows divide (the standard error's small-sample share
    ``cbar^T S^-1 cbar`` vanishes as they come), for deciding how many to draw."""
    return _regression(sum_e, sumsq_e, count, control_sum)[1]


def _regression(sum_e, sumsq_e, count, control_sum):
    """``(mean, s^2, cbar^T S^-1 cbar, n)`` per sigma of :func:`estimate`'s regression."""
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
        beta, lev = np.zeros((m, k)), np.zeros(m)
        if ok.any():  # on the correlations, directions below RCOND of the largest dropped: the parts are nearly
            # collinear at small sigma, and there a plain pseudo-inverse turned 1e-16 changes of the sums into 1e-7
            scale = np.sqrt(np.maximum(np.einsum("mii->mi", cov_cc[ok]), 0.0))
            scale = np.where(scale > 0, scale, 1.0)
            corr = cov_cc[ok] / (scale[:, :, None] * scale[:, None, :])
            inv = np.linalg.pinv(corr, rcond=RCOND, hermitian=True)
            beta[ok] = np.einsum("mij,mj->mi", inv, cov_ce[ok] / scale) / scale
            lev[ok] = np.einsum("mi,mij,mj->m", mc[ok] / scale, inv, mc[ok] / scale)  # cbar^T S^-1 cbar
        mean = np.where(ok, me - (beta * mc).sum(1), me)
        resid = np.where(ok, np.maximum(cov_ee - (beta * cov_ce).sum(1), 0.0) / np.maximum(n - 1 - k, 1),
                         np.maximum(cov_ee, 0.0) / np.maximum(n - 1, 1))
    return mean, resid, lev, n


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
    if data.is_tensor:
        return _cached(data.source, control, lambda: _fit(control, data))
    return _fit(control, data)


def _fit(control, data):
    """The controls a named request takes for ``data``, fitted (k-means, eigendecompositions, per-row tables)."""
    out = [_global(control, data)] if control in ("wiener", "both", "auto") else []
    if control in ("local", "both", "auto"):
        rows = data.source if data.is_tensor else data.draw(FIT_ROWS, torch.Generator().manual_seed(0))[0]
        out.append(LocalWiener.of_rows(rows))
    out = [c for c in out if c is not None]
    if data.is_tensor and data.source.numel() <= TABLE_VALUES:  # x0's half of the products, once per data row
        out = [c.indexed(data.source) for c in out]
    return out


_LAST = {}  # the controls last fitted to a data tensor: its weak reference, what they depend on, the controls


def _cached(rows, control, fit):
    """``fit()``, or the controls fitted to the same tensor ``rows`` by the last call: the same object (its weak
    reference alive), unmodified (its version counter), the same request. A fit is a fixed cost per call (on
    2,000 rows of 256 values about 0.05 s, a 16% share of an 8,192-evaluation profile of a 5 Mflop conv net);
    calls with the same data in one process pay it once. One entry: the tables it keeps are the data's size."""
    key = (control, rows._version, tuple(rows.shape))  # the same object: its dtype and device are its own
    ref = _LAST.get("rows")
    if ref is not None and ref() is rows and _LAST["key"] == key:
        return list(_LAST["controls"])
    out = fit()
    _LAST.update(rows=weakref.ref(rows), key=key, controls=tuple(out))
    return out


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
