"""The paper's one-dimensional study (Stancevic et al., figure 3): does entropic time sample better?

Mixtures of 5 and 15 atoms (discrete) and of 5 and 15 overlapping Gaussians (continuous), each
normalised to mean 0 and std 1, with their exact denoisers; stochastic DDIM at 4 to 64 steps on
the schedules EDM (rho 7), entropic, rescaled, LAS and tangent. Every seed re-profiles the model
and re-samples, so the error bars hold both sources of noise. KL(data || samples): binned for the
atoms, Gaussian-KDE Monte Carlo for the continuous mixtures.

Usage: python benchmarks/paper_mixtures.py [--quick] [--out-dir benchmarks/results]
"""
import os

import numpy as np
import torch
from tqdm.auto import tqdm

import entropic_fast as ef
import harness
from entropic_fast import metrics, samplers

KINDS = ["edm", "entropic", "rescaled", "las", "tangent"]


def mixture(k, continuous, seed=0):
    """A 1-D mixture of ``k`` components, normalised to mean 0 and variance 1: (means, variances, weights)."""
    rng = np.random.default_rng(seed + 100 * k)
    means = np.arange(k) + rng.uniform(-0.25, 0.25, k)
    var = np.full(k, 0.45**2 if continuous else 0.0)
    w = rng.dirichlet(np.full(k, 2.0))
    m = np.sum(w * means)
    sd = np.sqrt(np.sum(w * (var + means**2)) - m**2)
    return (means - m) / sd, var / sd**2, w


def logpdf(means, var, w):
    """Log density of a 1-D Gaussian mixture."""
    def f(x):
        z = -0.5 * (x[:, None] - means) ** 2 / var - 0.5 * np.log(2 * np.pi * var) + np.log(w)
        top = z.max(1, keepdims=True)
        return top[:, 0] + np.log(np.exp(z - top).sum(1))
    return f


def run(quick=False, seeds=3, n=20000, steps=(4, 8, 16, 32, 64), samples=512):
    if quick:
        n, steps, samples = 3000, (4, 16), 128
    seeds = harness.seeds(seeds, quick)
    problems = [(f"{k} atoms", k, False) for k in (5, 15)] + [(f"{k} Gaussians", k, True) for k in (5, 15)]
    results = {}  # (problem, kind, steps) -> list of KL over seeds
    bar = tqdm(total=len(problems) * len(seeds) * len(KINDS) * len(steps), desc="paper mixtures", leave=False)
    for name, k, continuous in problems:
        means, var, w = mixture(k, continuous)
        model = ef.analytic.GMM(torch.tensor(means)[:, None], torch.tensor(var), torch.tensor(w))
        rng = np.random.default_rng(7)
        data = rng.choice(means, 5000, p=w) + rng.normal(size=5000) * np.sqrt(var[0])
        for seed in seeds:
            prof = ef.profile(model, model, samples=samples, seed=seed, progress=False)
            for kind in KINDS:
                for K in steps:
                    sig = ef.schedule(prof, K, kind, interval="range")
                    g = torch.Generator().manual_seed(1000 * seed + K)
                    x = torch.randn(n, 1, generator=g, dtype=torch.float64) * sig[0]
                    out = samplers.ddim(model, x, sig, generator=g, eta=1.0)[:, 0].numpy()
                    kl = metrics.kl_continuous_1d(out, data, logpdf(means, var, w)) if continuous \
                        else metrics.kl_discrete_1d(out, means, w)
                    results.setdefault((name, kind, K), []).append(kl)
                    bar.update()
    bar.close()
    return [p[0] for p in problems], list(steps), results


def verdicts(problems, steps, results):
    """The paper's two claims, checked step count by step count."""
    mean = {key: np.mean(v) for key, v in results.items()}
    lines = []
    for name in problems:
        if "atoms" in name:
            wins = [K for K in steps if mean[(name, "entropic", K)] < mean[(name, "edm", K)]]
            claim = "entropic beats EDM"
        else:
            wins = [K for K in steps if mean[(name, "rescaled", K)] <= min(mean[(name, k, K)] for k in ("edm", "entropic"))]
            claim = "rescaled is best of EDM / entropic / rescaled"
        lost = [K for K in steps if K not in wins]
        lines.append(f"- {name}: {claim} at {wins or 'no'} steps" + (f"; not at {lost}" if lost else ""))
    return lines


def write(problems, steps, results, out_dir, quick):
    n_seeds = len(next(iter(results.values())))
    lines = harness.header("Paper mixtures: stochastic DDIM, KL(data || samples), mean ± std over seeds",
                           "paper_mixtures.py", quick, f"Seeds {n_seeds}; best per row in bold.")
    rows = [((name, K), {k: results[(name, k, K)] for k in KINDS}) for name in problems for K in steps]
    lines += harness.table(("mixture", "steps"), KINDS, rows)[0]
    lines += ["", "## The paper's claims, checked", ""] + verdicts(problems, steps, results)
    text = "\n".join(lines) + "\n"
    harness.save(out_dir, "paper_mixtures", quick, text)
    plt = harness.pyplot()
    fig, axes = plt.subplots(1, len(problems), figsize=(3.6 * len(problems), 3.2), constrained_layout=True)
    for ax, name in zip(axes, problems):
        for kind in KINDS:
            m = [np.mean(results[(name, kind, K)]) for K in steps]
            sd = [np.std(results[(name, kind, K)]) for K in steps]
            ax.errorbar(steps, m, yerr=sd, marker="o", ms=3, capsize=2, label=kind)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(name)
        ax.set_xlabel("steps")
    axes[0].set_ylabel("KL(data || samples)")
    axes[-1].legend(fontsize=8)
    fig.savefig(os.path.join(out_dir, f"paper_mixtures{'_quick' if quick else ''}.png"), dpi=110)
    return text


if __name__ == "__main__":
    harness.main(__doc__, run, write)
