"""Control variates at the network's speed (issue 42): the packed per-cluster products and the per-row tables
against a row-by-row reference written differently, the float32 principal directions against float64 ones, and
``control="auto"`` deciding by measured cost and variance after an adaptive run's pilot (off where the controls
explain nothing, on where they explain nearly all, the decision kept across a resume)."""
import numpy as np
import pytest
import torch

import entropic_fast as ef
from entropic_fast import control


def _noisy(b, d, seed):
    g = torch.Generator().manual_seed(seed)
    rows = torch.randn(300, d, generator=g, dtype=torch.float64) * torch.linspace(0.2, 2.0, d, dtype=torch.float64)
    pick = torch.randint(0, rows.shape[0], (b,), generator=g)
    sigma = torch.exp(torch.randn(b, generator=g, dtype=torch.float64))
    x0 = rows[pick]
    return rows, pick, x0, x0 + sigma[:, None] * torch.randn(b, d, generator=g, dtype=torch.float64), sigma


def _local_by_row(ctl, x, x0, sigma):
    """Row by row: the nearest centre by explicit distances, the row's own basis, the conditional mean by the
    expectation written out (``E[d^2] = s^2``, ``E[a d] = 0``)."""
    out = []
    for i in range(x0.shape[0]):
        c = int(((ctl.centres - x0[i]) ** 2).sum(1).argmin())
        u, lam, s2 = ctl.bases[c], ctl.lam[c], float(sigma[i]) ** 2
        g = lam / (lam + s2)
        a, d = u.T @ (x0[i] - ctl.centres[c]), u.T @ (x[i] - x0[i])
        loss = (((g - 1) * a + g * d) ** 2).sum()
        mean = ((g - 1) ** 2 * a**2 + g**2 * s2).sum()
        out.append(float(loss - mean))
    return np.array(out)


@pytest.mark.parametrize("b, d", [(1, 5), (7, 17), (33, 70), (130, 64)])
def test_local_control_packed_and_tabled_match_a_row_by_row_reference(b, d):
    rows, pick, x0, x, sigma = _noisy(b, d, seed=b + d)
    ctl = control.LocalWiener.of_rows(rows)
    want = _local_by_row(ctl, x, x0, sigma)
    scale = np.abs(want).max() + 1.0
    r = control.rows64(x, x0, sigma)
    for got in (ctl.centred(x, x0, sigma), ctl.centred_rows(*r, padded=True),
                ctl.indexed(rows).centred_rows(*r, rows=pick)):
        np.testing.assert_allclose(got[:2].sum(0).numpy(), want, rtol=1e-10, atol=1e-10 * scale)  # noise + cross


@pytest.mark.parametrize("d", [3, 64])
def test_the_local_row_part_is_centred_over_the_data_rows(d):
    """Over every row of the data tensor at one sigma, ``E[L | x0]`` less its known mean averages to zero, and the
    part is that conditional mean, by Monte Carlo over the noise."""
    rows, _, _, _, _ = _noisy(1, d, seed=d)
    ctl = control.LocalWiener.of_rows(rows).indexed(rows)
    for s in (0.01, 0.7, 30.0):
        sigma = torch.full((rows.shape[0],), s, dtype=torch.float64)
        row = ctl.centred(rows, rows, sigma)[2]  # x = x0: the noise does not enter the row part
        assert abs(float(row.mean())) < 1e-10 * (float(row.abs().max()) + 1e-300) * 10
    g = torch.Generator().manual_seed(1)
    x0 = rows[:3].repeat_interleave(20000, 0)
    sigma = torch.full((len(x0),), 0.7, dtype=torch.float64)
    x = x0 + 0.7 * torch.randn(x0.shape, generator=g, dtype=torch.float64)
    base = control.LocalWiener(ctl.centres, ctl.bases, ctl.lam)  # the same clusters, no table: L - E[L | x0]
    loss = base.centred(x, x0, sigma).sum(0) + ctl.centred(x0, x0, sigma)[2] + ctl._row_mean(sigma[:, None] ** 2)
    for i in range(3):  # the mean of L over the noise, per row, is E[L | x0] (the row part plus its mean)
        block = slice(i * 20000, (i + 1) * 20000)
        want = float(ctl.centred(x0[block][:1], x0[block][:1], sigma[:1])[2] + ctl._row_mean(sigma[:1, None] ** 2))
        np.testing.assert_allclose(float(loss[block].mean()), want, rtol=0.05)


@pytest.mark.parametrize("b, d, n", [(1, 3, 300), (9, 40, 300), (64, 129, 300), (20, 200, 50)])
def test_wiener_control_with_its_table_matches_the_formula(b, d, n):
    """The data's own Wiener control, with and without the per-row table, against ``||W(x) - x0||^2 - E[L]``
    computed in the original coordinates: ``W(x) = mu + A (x - mu)``, ``A = U diag(g) U^T + g_rest (I - U U^T)``
    (above ``RANK`` values the rest's directions share one gain; up to it ``U U^T = I``), ``E[L] = tr((A - I) S
    (A - I)^T) + s^2 tr(A A^T)`` with ``S`` the rows' covariance; ``norm`` is ``||x0 - mu||^2 - tr S``."""
    rows, pick, x0, x, sigma = _noisy(b, d, seed=d)
    rows, pick = rows[:n], pick % n
    x0 = rows[pick]
    x = x0 + sigma[:, None] * torch.randn(b, d, generator=torch.Generator().manual_seed(b), dtype=torch.float64)
    ctl = control.Wiener.of_rows(rows)
    k = ctl.basis.shape[1]  # every direction up to RANK values, the top RANK (or the rows' span) above
    assert (k == d) if d <= control.RANK else (k <= control.RANK and ctl.rest[0] == d - k)
    np.testing.assert_allclose((ctl.basis.T @ ctl.basis).numpy(), np.eye(k), atol=1e-12)
    xc = rows - rows.mean(0)
    cov, eye = xc.T @ xc / n, torch.eye(d, dtype=torch.float64)
    m, lam_rest = ctl.rest
    want = []
    for i in range(b):
        s2 = float(sigma[i]) ** 2
        a = ctl.basis @ torch.diag(ctl.lam / (ctl.lam + s2)) @ ctl.basis.T
        a = a + (lam_rest / (lam_rest + s2) if m else 0.0) * (eye - ctl.basis @ ctl.basis.T)
        w = ctl.mean + a @ (x[i] - ctl.mean)
        mean = torch.trace((a - eye) @ cov @ (a - eye).T) + s2 * torch.trace(a @ a.T)
        want.append(float(((w - x0[i]) ** 2).sum() - mean))
    want = np.array(want)
    r = control.rows64(x, x0, sigma)
    norm = ((x0 - ctl.mean) ** 2).sum(1) - torch.trace(cov)
    for got in (ctl.centred(x, x0, sigma), ctl.indexed(rows).centred_rows(*r, rows=pick)):
        np.testing.assert_allclose(got[:3].sum(0).numpy(), want, rtol=1e-8, atol=1e-8 * (np.abs(want).max() + 1))
        np.testing.assert_allclose(got[3].numpy(), norm.numpy(), rtol=1e-10, atol=1e-10 * float(norm.abs().max()))


@pytest.mark.parametrize("n, d, r", [(40, 100, 64), (300, 20, 20), (5, 9, 9), (200, 64, 64)])
def test_principal_directions_are_unit_and_their_variances_are_the_top_eigenvalues(n, d, r):
    g = torch.Generator().manual_seed(n)
    x = torch.randn(n, d, generator=g, dtype=torch.float64) * torch.logspace(0, -2, d, dtype=torch.float64)
    x = x - x.mean(0)
    u, lam = control._principal(x, r)
    live = lam > 1e-9 * lam.max()
    np.testing.assert_allclose(u[:, live].norm(dim=0).numpy(), 1.0, rtol=1e-12)
    np.testing.assert_allclose(lam.numpy(), ((x @ u) ** 2).sum(0).numpy() / n, rtol=1e-12)  # Rayleigh, exactly
    top = torch.linalg.eigvalsh(x.T @ x / n).flip(0)[:r]
    k = int(min(r, n - 1))
    np.testing.assert_allclose(lam[:k].numpy(), top[:k].numpy(), rtol=1e-4, atol=1e-6 * float(top[0]))


SIGNS = torch.randint(0, 2, (4000, 64), generator=torch.Generator().manual_seed(0)).float() * 2 - 1


def hashed(v, s):
    """A cheap denoiser whose error the Wiener controls cannot follow: rows of constant norm, outputs of
    pseudo-random phase."""
    return torch.sin(1000.0 * v)


def test_auto_turns_the_controls_off_where_they_do_not_pay(tmp_path):
    p = ef.profile(hashed, SIGNS, tolerance=0.01, progress=False)
    d = p.meta["control_decision"]
    assert d["on"] is False and d["measured"] is True
    assert d["seconds_left"]["with"] > d["seconds_left"]["without"]
    assert p.control_sum is None and "control" not in p.meta
    assert "controls  off (auto, after the pilot)" in p.summary()
    back = ef.Profile.load(p.save(tmp_path / "p.npz"))
    assert back.meta["control_decision"] == d


GAUSS = torch.randn(4000, 16, generator=torch.Generator().manual_seed(1))


def wiener(v, s):
    """Nearly the optimal denoiser of the standard Gaussian rows: the controls follow its error almost exactly."""
    return v / (1 + s.view(-1, 1) ** 2) + 1e-3 * torch.sin(v)


def test_auto_keeps_the_controls_where_they_pay():
    p = ef.profile(wiener, GAUSS, tolerance=0.005, progress=False)
    d = p.meta["control_decision"]
    assert d["on"] is True and d["evaluations_left"]["with"] < d["evaluations_left"]["without"]
    assert p.meta["control"][0] == "wiener.data" and p.control_sum is not None


def test_explicit_controls_and_fixed_runs_take_no_decision():
    assert "control_decision" not in ef.profile(hashed, SIGNS, tolerance=0.03, control="both",
                                                progress=False).meta
    assert "control_decision" not in ef.profile(hashed, SIGNS, ef.sigma_grid(8), samples=64, progress=False).meta


class Stopping:
    """``hashed``, raising KeyboardInterrupt after ``after`` calls."""

    def __init__(self, after=None):
        self.after, self.calls = after, 0

    def __call__(self, v, s):
        self.calls += 1
        if self.after is not None and self.calls > self.after:
            raise KeyboardInterrupt
        return hashed(v, s)

    def fingerprint(self):
        return "hashed"


def test_a_resumed_run_keeps_the_decision_taken_before_the_interruption(tmp_path):
    kw = dict(tolerance=0.01, batch_size=64, progress=False)
    whole = ef.profile(Stopping(), SIGNS, **kw)
    ck = tmp_path / "ck.npz"
    with pytest.raises(KeyboardInterrupt):  # the pilot is 32 units of 16 rows: 8 batches; stop in round two
        ef.profile(Stopping(20), SIGNS, checkpoint=ck, checkpoint_every=1, **kw)
    saved, arrays = ef.checkpoint.load(ck)
    assert saved["control_decision"]["on"] is False and "cv" not in arrays  # decided, then interrupted
    resumed = ef.profile(Stopping(), SIGNS, checkpoint=ck, **kw)
    assert resumed.meta["control_decision"]["on"] is False and resumed.control_sum is None
    np.testing.assert_allclose(resumed.mse, whole.mse, rtol=1e-12)
    assert resumed.meta["evaluations"] == whole.meta["evaluations"]


def test_the_last_data_tensors_controls_are_reused_only_while_it_is_unchanged(monkeypatch):
    """A second profile of the same tensor takes the controls fitted by the first (the same sums); a changed
    tensor (in place), another tensor or another request is fitted afresh."""
    fits = []
    real = control.LocalWiener.of_rows
    monkeypatch.setattr(control.LocalWiener, "of_rows", classmethod(lambda cls, rows: fits.append(1) or real(rows)))
    rows = torch.randn(300, 1, 4, 4, generator=torch.Generator().manual_seed(0))

    def run(data, which="auto"):
        return ef.profile(lambda x, s: x / (1 + s.view(-1, 1, 1, 1) ** 2), data, ef.sigma_grid(8), samples=32,
                          control=which, progress=False)
    first, again = run(rows), run(rows)
    assert len(fits) == 1
    np.testing.assert_array_equal(first.control_sum, again.control_sum)
    run(rows.clone())
    assert len(fits) == 2  # another tensor of the same values
    run(rows, "local")
    assert len(fits) == 3  # another request
    rows[0] += 1.0
    changed = run(rows, "local")
    assert len(fits) == 4 and not np.array_equal(changed.control_sum, first.control_sum)
