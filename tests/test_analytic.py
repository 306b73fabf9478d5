import numpy as np
import pytest
import torch
from scipy.special import logsumexp

from entropic_fast import analytic
from entropic_fast.errors import InputError


def brute_gmm_denoiser(x, sigma, means, var, weights):
    """Posterior mean of a GMM written directly with differences and scipy's logsumexp."""
    x, means = x.reshape(len(x), -1).numpy(), means.reshape(len(means), -1).numpy()
    d = x.shape[1]
    out = np.empty_like(x)
    for b in range(len(x)):
        tot = var + sigma[b] ** 2
        logit = np.log(weights) - ((x[b] - means) ** 2).sum(1) / (2 * tot) - 0.5 * d * np.log(tot)
        p = np.exp(logit - logsumexp(logit))
        comp_means = means + (var / tot)[:, None] * (x[b] - means)
        out[b] = p @ comp_means
    return out


@pytest.mark.parametrize("chunk", [1, 3, 4096])
def test_gmm_denoiser_matches_brute_force(chunk):
    g = torch.Generator().manual_seed(0)
    means = torch.randn(7, 2, 3, generator=g, dtype=torch.float64)
    var = np.array([0.1, 0.5, 0.01, 1.0, 0.2, 0.3, 0.05])
    w = np.arange(1, 8, dtype=float)
    model = analytic.GMM(means, var, w, chunk=chunk)
    x = torch.randn(11, 2, 3, generator=g, dtype=torch.float64) * 2
    sigma = torch.logspace(-2, 1, 11, dtype=torch.float64)
    got = model(x, sigma).reshape(11, -1).numpy()
    np.testing.assert_allclose(got, brute_gmm_denoiser(x, sigma.numpy(), means, var, w / w.sum()),
                               rtol=1e-10, atol=1e-12)


def test_gaussian_denoiser_equals_one_component_gmm():
    var = torch.tensor([[0.1, 2.0], [0.5, 1.0]], dtype=torch.float64)
    gauss = analytic.Gaussian(var)
    x = torch.randn(5, 2, 2, dtype=torch.float64)
    sigma = torch.tensor([0.01, 0.3, 1.0, 3.0, 80.0], dtype=torch.float64)
    for s in range(5):  # a GMM with one zero-mean component of per-dimension variance v_i, one dim at a time
        for i in range(2):
            for j in range(2):
                one = analytic.GMM(torch.zeros(1, 1), float(var[i, j]))
                np.testing.assert_allclose(gauss(x[s:s + 1], sigma[s:s + 1])[0, i, j].item(),
                                           one(x[s:s + 1, i, j].reshape(1, 1), sigma[s:s + 1]).item(), rtol=1e-13)


def test_pointset_limits():
    pts = torch.tensor([[0.0, 0.0], [4.0, 0.0], [0.0, 6.0]], dtype=torch.float64)
    ps = analytic.PointSet(pts, chunk=2)
    x = pts + 0.01
    np.testing.assert_allclose(ps(x, torch.full((3,), 0.05)), pts, atol=1e-12)
    np.testing.assert_allclose(ps(torch.zeros(1, 2, dtype=torch.float64), torch.tensor([1e4])),
                               pts.mean(0, keepdim=True), rtol=1e-6)


def test_samples_have_the_model_moments():
    g = torch.Generator().manual_seed(3)
    x = analytic.GMM(torch.tensor([[-1.0], [2.0]]), [0.25, 0.04], [1.0, 3.0]).sample(200_000, g)
    assert abs(x.mean().item() - (-0.25 + 1.5)) < 0.01
    var = 0.25 * (0.25 + 1) + 0.75 * (0.04 + 4) - 1.25**2
    assert abs(x.var().item() - var) < 0.02
    y = analytic.Gaussian(0.5, (3,)).sample(100_000, g)
    np.testing.assert_allclose(y.var(0).numpy(), 0.5, rtol=0.02)


def test_gaussian_mse_closed_form():
    gauss = analytic.Gaussian(torch.tensor([0.25, 4.0]))
    s = np.array([0.1, 1.0, 10.0])
    np.testing.assert_allclose(gauss.mse(s), s**2 * 0.25 / (s**2 + 0.25) + s**2 * 4 / (s**2 + 4), rtol=1e-14)


def test_bad_input():
    with pytest.raises(InputError, match="variances must be finite and > 0"):
        analytic.Gaussian(-1.0, (2,))
    with pytest.raises(InputError, match="weights must be 2 finite values"):
        analytic.GMM(torch.zeros(2, 1), 0.1, [1.0, -1.0])


def test_a_point_set_at_sigma_zero_returns_the_rows():
    ps = analytic.PointSet(torch.randn(5, 2, generator=torch.Generator().manual_seed(0)))
    x = torch.randn(3, 2, generator=torch.Generator().manual_seed(1))
    out = ps(x, torch.tensor([0.0, 0.0, 1.0]))
    torch.testing.assert_close(out[:2], x[:2])
    assert bool(torch.isfinite(out).all())
