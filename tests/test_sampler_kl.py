"""Closed-form KL of every sampler on Gaussian data, and the Gaussian-optimal schedule per sampler (issue 17, items 1-2)."""
import numpy as np
import pytest
import torch

import entropic_fast as ef
from entropic_fast import metrics, samplers, schedules
from entropic_fast.errors import InputError

LAM = torch.tensor([0.02, 0.3, 1.0, 4.0], dtype=torch.float64)
SIG = ef.grids.karras(6, 0.01, 20.0)  # descending, ending in 0
GAUSS = ef.analytic.Gaussian(LAM, (4,))


class Recording:
    """The exact Gaussian denoiser, remembering the last input it saw at each sigma."""

    def __init__(self):
        self.seen = {}

    def __call__(self, x, sigma):
        self.seen[round(float(sigma[0]), 12)] = x.clone()
        return GAUSS(x, sigma)


@pytest.mark.parametrize("sampler", ["ddim", "heun", "dpmpp_2m"])
def test_deterministic_closed_forms_equal_the_sampler(sampler):
    """Linear samplers on x = 1: the output (a list ending in 0) and the input the denoiser last got at the final
    positive sigma (a list stopping there) are the amplitudes; squared times the start variance they are the
    predicted output variances, to rounding."""
    den = Recording()
    out = samplers.SAMPLERS[sampler](den, torch.ones(1, 4, dtype=torch.float64), SIG)[0]
    start = LAM + float(SIG[0]) ** 2
    torch.testing.assert_close(schedules.sampler_variance(torch.as_tensor(SIG), LAM, sampler), start * out**2,
                               rtol=1e-10, atol=0)
    at_last = den.seen[round(float(SIG[-2]), 12)][0]
    torch.testing.assert_close(schedules.sampler_variance(torch.as_tensor(SIG[:-1]), LAM, sampler),
                               start * at_last**2, rtol=1e-10, atol=0)


def test_stochastic_ddim_variance_recursion_matches_sampling():
    n = 40000
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g, dtype=torch.float64) * (LAM + float(SIG[0]) ** 2).sqrt()
    out = samplers.SAMPLERS["ddim-stochastic"](GAUSS, x, SIG, generator=g)
    pred = schedules.sampler_variance(torch.as_tensor(SIG), LAM, "ddim-stochastic")
    emp = out.var(0)
    assert torch.all((emp / pred - 1).abs() < 4 * np.sqrt(2 / n)), (emp, pred)


def test_gaussian_kl_is_the_ddim_closed_form_for_ddim_and_differentiable():
    s = SIG[:-1]
    assert metrics.gaussian_kl(s, LAM) == pytest.approx(metrics.gaussian_ddim_kl(s, LAM), rel=1e-12)
    t = torch.tensor(s, requires_grad=True)
    schedules.sampler_kl(t, LAM, "heun").backward()
    assert torch.all(torch.isfinite(t.grad)) and t.grad.abs().sum() > 0
    with pytest.raises(InputError, match="sampler must be one of"):
        metrics.gaussian_kl(s, LAM, "euler")


@pytest.mark.parametrize("sampler", ["ddim", "ddim-stochastic", "heun", "dpmpp_2m"])
def test_gaussian_optimal_per_sampler_is_converged_and_beats_the_others(sampler):
    s = ef.sigma_grid()
    lam = LAM.numpy()
    prof = ef.Profile.from_curve(s, (s[:, None] ** 2 * lam / (s[:, None] ** 2 + lam)).sum(1), 4)
    own = ef.schedule(prof, 8, "gaussian-optimal", eigenvalues=lam, sampler=sampler)[:-1]
    ends = (own[-1], own[0])  # the optimum is within an interval: every other schedule on the same one
    kl = metrics.gaussian_kl(own, lam, sampler)
    others = {k: metrics.gaussian_kl(ef.schedule(prof, 8, k, interval=ends)[:-1], lam, sampler)
              for k in ("edm", "rescaled", "exponential")}
    ddim_opt = metrics.gaussian_kl(ef.schedule(prof, 8, "gaussian-optimal", eigenvalues=lam, interval=ends)[:-1],
                                   lam, sampler)
    assert kl <= min(list(others.values()) + [ddim_opt]) * (1 + 1e-9), (kl, others, ddim_opt)
    inner = torch.tensor(np.log(own[1:-1]), requires_grad=True)
    full = torch.cat([torch.tensor([np.log(own[0])]), inner, torch.tensor([np.log(own[-1])])]).exp()
    torch.log(schedules.sampler_kl(full, LAM, sampler)).backward()
    assert float(inner.grad.norm()) < 1e-4 or kl < 1e-9, (sampler, inner.grad)


def test_nnls_matches_scipy():
    from scipy.optimize import nnls as scipy_nnls
    rng = np.random.default_rng(0)
    for m, n in ((30, 10), (20, 40), (128, 80)):
        a, b = rng.normal(size=(m, n)), rng.normal(size=m)
        ours, ref = ef.curves.nnls(a, b), scipy_nnls(a, b, maxiter=10 * n)[0]
        assert np.all(ours >= 0)
        assert np.linalg.norm(a @ ours - b) <= np.linalg.norm(a @ ref - b) * (1 + 1e-8) + 1e-12


@pytest.mark.parametrize("sampled, sampler, bound", [(False, "ddim", 1.05), (False, "heun", 1.05), (True, "ddim", 1.10)])
def test_effective_spectrum_recovers_a_schedule_near_the_true_optimum(sampled, sampler, bound):
    """Without eigenvalues, data or a spectral profile, gaussian-optimal fits the profile's effective spectrum;
    the KL of the resulting schedule, under the true spectrum, is within 5% of the true optimum from an exact
    curve. From 1024 samples of the plain mean (seed 0) DDIM's is within 10% (measured 6.7%; the deconvolution of a
    noisy curve is ill-posed). With the control variate, which is exact on Gaussian data, it is within 0.1%."""
    lam = LAM.numpy()
    s = ef.sigma_grid()
    prof = ef.profile(GAUSS, GAUSS, s, samples=1024, control=None, progress=False) if sampled else \
        ef.Profile.from_curve(s, (s[:, None] ** 2 * lam / (s[:, None] ** 2 + lam)).sum(1), 4)
    fitted = ef.schedule(prof, 8, "gaussian-optimal", sampler=sampler)[:-1]
    true = ef.schedule(prof, 8, "gaussian-optimal", eigenvalues=lam, sampler=sampler)[:-1]
    kl_fit, kl_true = (metrics.gaussian_kl(x, lam, sampler) for x in (fitted, true))
    assert kl_fit <= bound * kl_true, (kl_fit, kl_true)
    assert "effective_spectrum" not in prof.meta  # the schedule leaves the profile as it was (issue 28)
    fit = dict(zip(("eigenvalues", "weights"), (a.tolist() for a in schedules.effective_spectrum(prof))))
    assert len(fit["eigenvalues"]) == len(fit["weights"]) >= 1 and min(fit["weights"]) > 0
    if not sampled:  # the fit's total variance is the data's
        total = sum(w * l for w, l in zip(fit["weights"], fit["eigenvalues"]))
        assert total == pytest.approx(lam.sum(), rel=0.05)
