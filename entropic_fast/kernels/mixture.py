"""The model-free path's definitions in plain torch, shared by every back-end and the analytic models: the
mixture's ideal denoiser (its posterior mean) and the defensive importance sampling of its noise."""
import math

import torch


def _compute_dtype(*tensors):
    return torch.float64 if all(t.dtype == torch.float64 for t in tensors) else torch.float32


def gmm_denoise(means, var, logw, x, sigma, chunk=4096):
    """Posterior mean of ``sum_k w_k N(mu_k, v_k I)`` at ``x`` (rows), streamed over components."""
    ct = _compute_dtype(means, x)
    xf = x.reshape(x.shape[0], -1).to(ct)
    dim = xf.shape[1]
    s2 = sigma.to(ct).reshape(-1, 1) ** 2
    xx = xf.square().sum(1, keepdim=True)
    run_max = torch.full_like(s2, -math.inf)
    run_sum, acc_x, acc_mu = torch.zeros_like(s2), torch.zeros_like(s2), torch.zeros_like(xf)
    for lo in range(0, means.shape[0], chunk):
        mu = means[lo:lo + chunk].to(ct)
        v = var[lo:lo + chunk].to(ct)[None, :]
        tot = v + s2
        sq = (xx - 2 * xf @ mu.T + mu.square().sum(1)[None, :]).clamp_min(0)
        logit = logw[lo:lo + chunk].to(ct)[None, :] - sq / (2 * tot) - 0.5 * dim * tot.log()
        new_max = torch.maximum(run_max, logit.max(1, keepdim=True).values)
        scale = (run_max - new_max).exp()
        p = (logit - new_max).exp()
        run_sum = run_sum * scale + p.sum(1, keepdim=True)
        acc_mu = acc_mu * scale + (p * s2 / tot) @ mu
        acc_x = acc_x * scale + (p * v / tot).sum(1, keepdim=True)
        run_max = new_max
    return ((acc_mu + acc_x * xf) / run_sum).reshape(x.shape)


# Defensive importance sampling of the model-free path's noise (Hesterberg 1995). In low dimensions the error
# at small sigma is a rare event (noise that reaches a neighbouring point). Each row draws its noise at
# ``tau * sigma`` for one of IS_WIDE's ``(tau, share)`` with that probability (else at sigma), and its error is
# weighted by p/q, q the mixture of the draws: unbiased, and the weight is at most 1 / (1 - total share), so
# the second moment never exceeds that factor times the plain one. Above IS_MAX_DIM the wide draws' weights vanish
# (p_tau / p ~ tau^-d) and would only cost samples.
IS_MAX_DIM, IS_WIDE = 8, ((2.0, 0.125), (4.0, 0.125))


def importance(dim):
    """The wide draws ``((tau, share), ...)`` of the model-free path for rows of ``dim`` values; ``()`` above
    ``IS_MAX_DIM``, where rows are drawn plainly."""
    return IS_WIDE if dim <= IS_MAX_DIM else ()
