import numpy as np
import pytest
import torch
from scipy.optimize import brentq, minimize_scalar

import entropic_fast as ef
from entropic_fast import analytic, grids, metrics, plots
from entropic_fast.errors import InputError

SHAPE = (2, 6, 7)


def model(shape=SHAPE):
    scale = torch.linspace(0.5, 2.0, shape[0]).view(-1, 1, 1)
    return analytic.StationaryGaussian(analytic.power_law_spectrum(shape, exponent=2.5) * scale)


def exact_profile(m, sigmas=None):
    s = ef.sigma_grid() if sigmas is None else sigmas
    return ef.Profile.from_curve(s, m.mse(s), m.dim, spectra=m.spectra(s), data_power=m.power.numpy())


def closed_form_spectral(lam, K, smin=0.002, smax=80.0):
    """S(s) = sum_k sqrt(l_k) [atan(s/c_k) - atan(smin/c_k)] / [atan(smax/c_k) - atan(smin/c_k)], inverted."""
    c = np.sqrt(lam)

    def S(s):
        return np.sum(c * (np.arctan(s / c) - np.arctan(smin / c)) / (np.arctan(smax / c) - np.arctan(smin / c)))

    total = S(smax)
    out = [smax] + [brentq(lambda s: S(s) - total * (1 - i / (K - 1)), smin, smax, xtol=1e-14, rtol=1e-14)
                    for i in range(1, K - 1)] + [smin]
    return np.array(out)


def test_wiener_denoiser_is_the_dense_posterior_mean():
    m = model((1, 4, 5))
    d = m.dim
    F = np.fft.fft2(np.eye(d).reshape(d, 4, 5), norm="ortho").reshape(d, d).T  # x -> F x, row k
    cov = (F.conj().T @ np.diag(m.eigenvalues) @ F).real
    x = torch.randn(3, 1, 4, 5, dtype=torch.float64)
    sigma = torch.tensor([0.1, 1.0, 5.0], dtype=torch.float64)
    for b in range(3):
        dense = cov @ np.linalg.solve(cov + sigma[b].item() ** 2 * np.eye(d), x[b].reshape(-1).numpy())
        np.testing.assert_allclose(m(x[b:b + 1], sigma[b:b + 1]).reshape(-1).numpy(), dense, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_parseval_spectral_errors_sum_to_mse(backend):
    m = model()
    p = ef.profile(m, m, ef.sigma_grid(5, 0.01, 10.0), samples=24, spectral=True, backend=backend, progress=False)
    assert p.spectra.shape == (5, *SHAPE) and p.data_power.shape == SHAPE
    np.testing.assert_allclose(p.spectra.sum((1, 2, 3)), p.mse, rtol=1e-6)
    # the data power estimates the model's spectrum
    assert abs(p.data_power.sum() / m.power.sum().item() - 1) < 0.15


@pytest.mark.parametrize("K", [8, 16])
def test_spectral_schedule_from_exact_curves(K):
    m = model()
    s = ef.schedule(exact_profile(m), K, "spectral", interval="range")
    np.testing.assert_allclose(s[:-1], closed_form_spectral(m.eigenvalues, K), rtol=1e-4)


def test_spectral_schedule_from_a_sampled_profile():
    m = model()
    p = ef.profile(m, m, samples=256, spectral=True, seed=1, progress=False)
    s = ef.schedule(p, 12, "spectral", interval="range")
    np.testing.assert_allclose(s[:-1], closed_form_spectral(m.eigenvalues, 12), rtol=0.02)


def test_spectral_profile_save_load_and_merge(tmp_path):
    m = model()
    grid = ef.sigma_grid(4)
    a = ef.profile(m, m, grid, samples=40, spectral=True, shard=(0, 2), progress=False)
    b = ef.profile(m, m, grid, samples=40, spectral=True, shard=(1, 2), progress=False)
    whole = ef.profile(m, m, grid, samples=40, spectral=True, progress=False)
    merged = a.merge(b)
    np.testing.assert_allclose(merged.spectral_sum, whole.spectral_sum, rtol=1e-12)
    np.testing.assert_allclose(merged.data_power, whole.data_power, rtol=1e-12)
    q = ef.Profile.load(whole.save(tmp_path / "s.npz"))
    np.testing.assert_array_equal(q.spectral_sum, whole.spectral_sum)
    np.testing.assert_array_equal(q.data_power, whole.data_power)
    plain = ef.profile(m, m, grid, samples=40, progress=False)
    with pytest.raises(InputError, match="spectral True and False"):
        whole.merge(plain)


def test_spectral_file_without_power_count_is_a_format_error(tmp_path):
    import json
    import zipfile

    from entropic_fast.errors import ProfileFormatError
    good = exact_profile(model(), ef.sigma_grid(4)).save(tmp_path / "s.npz")
    with zipfile.ZipFile(good) as z:
        arrays = {n[:-4]: np.load(z.open(n)) for n in z.namelist()}
    meta = json.loads(str(arrays["meta"]))
    del meta["power_count"]
    arrays["meta"] = np.array(json.dumps(meta))
    arrays.pop("checksum")
    from entropic_fast.profile import checksum
    arrays["checksum"] = np.array(checksum(arrays))  # a consistent file: the meta itself says what is wrong
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ProfileFormatError, match="power_count must be a finite number > 0"):
        ef.Profile.load(tmp_path / "bad.npz")


def test_spectral_needs_image_data_and_a_spectral_profile():
    with pytest.raises(InputError, match=r"spectral=True needs image data"):
        ef.profile(lambda x, s: x, torch.randn(8, 5), samples=4, spectral=True, progress=False)
    g = ef.analytic.Gaussian(1.0, (4,))
    s = ef.sigma_grid()
    with pytest.raises(InputError, match="kind 'spectral' needs a spectral profile"):
        ef.schedule(ef.Profile.from_curve(s, g.mse(s), 4), 8, "spectral")


# ---------------------------------------------------------------- the DDIM KL and the optimal schedule

DESIGN_SIGMAS = [80, 3.0535, 1.5171, 0.9737, 0.6851, 0.4989, 0.3632, 0.2553, 0.1635, 0.0807, 0.002]


def test_ddim_kl_reproduces_design_value():
    assert abs(metrics.gaussian_ddim_kl(DESIGN_SIGMAS, [0.25]) - 0.016245) < 5e-7


def test_ddim_kl_agrees_with_simulated_ddim():
    lam = np.array([0.05, 0.25, 2.0])
    sig = grids.karras(6, 0.01, 20.0)[:-1]
    g = torch.Generator().manual_seed(0)
    n = 400_000
    x = torch.randn(n, 3, generator=g, dtype=torch.float64) * torch.tensor(np.sqrt(lam + sig[0] ** 2))
    lam_t = torch.tensor(lam)
    for s, s_next in zip(sig[:-1], sig[1:]):  # Euler on the probability-flow ODE with the exact denoiser
        den = x * lam_t / (lam_t + s**2)
        x = x + (s_next - s) * (x - den) / s
    r = x.var(0).numpy() / (lam + sig[-1] ** 2)
    simulated = 0.5 * np.sum(1 / r - 1 + np.log(r))
    closed = metrics.gaussian_ddim_kl(sig, lam)
    assert closed > 1e-3 and abs(simulated / closed - 1) < 0.05


def test_gaussian_optimal_beats_every_other_schedule_on_a_spread_spectrum():
    m = analytic.StationaryGaussian(analytic.power_law_spectrum((1, 8, 8), amplitude=10.0, exponent=3.0))
    lam = m.eigenvalues
    prof = exact_profile(m)
    for K in (8, 16):
        opt = metrics.gaussian_ddim_kl(ef.schedule(prof, K, "gaussian-optimal")[:-1], lam)
        best_tangent = minimize_scalar(
            lambda lc: metrics.gaussian_ddim_kl(grids.tangent(K, 0.002, 80.0, np.exp(lc))[:-1], lam),
            bounds=(np.log(1e-3), np.log(1e2)), method="bounded", options={"xatol": 1e-9}).fun
        others = {k: metrics.gaussian_ddim_kl(ef.schedule(prof, K, k)[:-1], lam) for k in ("rescaled", "spectral", "edm")}
        assert opt <= best_tangent * (1 + 1e-9), (K, opt, best_tangent)
        assert all(opt <= v for v in others.values()), (K, opt, others)


def test_gaussian_optimal_from_pca_matches_known_eigenvalues():
    lam = np.array([4.0, 1.0, 0.2, 0.01])
    x = torch.randn(20000, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * torch.tensor(lam).sqrt()
    s = ef.sigma_grid()
    prof = ef.Profile.from_curve(s, (s[:, None] ** 2 * lam / (s[:, None] ** 2 + lam)).sum(1), 4)
    a = ef.schedule(prof, 8, "gaussian-optimal", data=x)
    b = ef.schedule(prof, 8, "gaussian-optimal", eigenvalues=lam)
    np.testing.assert_allclose(a, b, rtol=0.05)


def test_bad_kl_input():
    with pytest.raises(InputError, match="strictly descending"):
        metrics.gaussian_ddim_kl([1.0, 2.0], [1.0])
    with pytest.raises(InputError, match="eigenvalues must be finite and > 0"):
        metrics.gaussian_ddim_kl([2.0, 1.0], [0.0])


# ---------------------------------------------------------------- the figure


def test_normalised_time_and_figure(tmp_path):
    prof = exact_profile(model())
    r = plots.normalised_rescaled_time(prof)
    np.testing.assert_allclose(r[-1], 1.0, rtol=1e-12)
    assert np.all(np.diff(r, axis=0) >= -1e-15)
    plots.spectral_time_figure(prof, 8, tmp_path / "spec.png")
    assert (tmp_path / "spec.png").stat().st_size > 10_000
