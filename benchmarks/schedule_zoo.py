"""Every schedule kind on problems with known truth, with four samplers, side by side.

Problems: isotropic Gaussian (16-D), stationary Gaussian images with a spread spectrum (1x8x8),
Gaussian mixtures in 2-D and 16-D, a point set in 8-D; exact denoisers. Samplers: deterministic
and stochastic DDIM, Heun, DPM++(2M), at equal network evaluations: budgets of 4, 8, 16 and 32
denoiser calls, each sampler taking the most steps that fit (Heun spends two per step, Euler on the
last: 2, 4, 8, 16 steps). ``gaussian-optimal`` is the optimum of the closed-form Gaussian KL for
the row's own sampler (eigenvalues from 4000 data samples); ``gauss-opt (ddim)`` is DDIM's optimum
run with the row's sampler, what the library offered before. Metric: sliced Wasserstein-2 between
the samples and fresh data samples (lower is better; its floor at this sample size is about
0.02). The spectral kind needs image data, so it runs on the image problem only.

Usage: python benchmarks/schedule_zoo.py [--quick] [--out-dir benchmarks/results]
"""
import torch
from tqdm.auto import tqdm

import entropic_fast as ef
import harness
from entropic_fast import analytic, metrics, samplers

KINDS = ["edm", "exponential", "tangent", "entropic", "rescaled", "las", "spectral", "gauss-opt (ddim)",
         "gaussian-optimal"]


def problems():
    g = torch.Generator().manual_seed(0)
    return {
        "gauss-iso-16": analytic.Gaussian(1.0, (16,)),
        "gauss-spread-8x8": analytic.StationaryGaussian(analytic.power_law_spectrum((1, 8, 8), 10.0, 3.0)),
        "gmm-2d": analytic.GMM(torch.randn(8, 2, generator=g, dtype=torch.float64) * 2, 0.05),
        "gmm-16d": analytic.GMM(torch.randn(10, 16, generator=g, dtype=torch.float64), 0.1),
        "points-8d": analytic.PointSet(torch.randn(32, 8, generator=g, dtype=torch.float64)),
    }


def run(quick=False, n=4000, budgets=(4, 8, 16, 32), samples=512):
    probs = problems()
    names = list(SAMPLER_NAMES)
    if quick:
        probs = {k: probs[k] for k in ("gauss-spread-8x8", "gmm-2d")}
        n, budgets, samples, names = 1000, (4, 8), 64, ["ddim", "heun"]
    rows = []
    bar = tqdm(total=len(probs) * len(names) * len(budgets), desc="schedule zoo", leave=False)
    for pname, model in probs.items():
        image = len(model.shape) == 3
        prof = ef.profile(model, model, samples=samples, spectral=image, control=None, progress=False)  # as measured
        ref = model.sample(n, torch.Generator().manual_seed(1))
        pca = model.sample(4000, torch.Generator().manual_seed(2))
        for budget in budgets:
            for sname in names:
                K = samplers.steps_within(sname, budget)
                vals = {}
                for kind in KINDS:
                    if kind == "spectral" and not image:
                        continue
                    opts = {"data": pca, "sampler": sname} if kind == "gaussian-optimal" else \
                        {"data": pca, "sampler": "ddim"} if kind == "gauss-opt (ddim)" else {}
                    sig = ef.schedule(prof, K, "gaussian-optimal" if kind.startswith("gauss") else kind, interval="range", **opts)
                    g = torch.Generator().manual_seed(budget)
                    x = torch.randn(n, *model.shape, generator=g, dtype=torch.float64) * sig[0]
                    out = SAMPLER_NAMES[sname](model, x, sig, generator=g)
                    vals[kind] = metrics.sliced_wasserstein(out, ref)
                rows.append((pname, sname, f"{samplers.evaluations(sname, K)} ({K} steps)", vals))
                bar.update()
    bar.close()
    return rows


SAMPLER_NAMES = {"ddim": samplers.ddim, "ddim-stochastic": samplers.SAMPLERS["ddim-stochastic"],
                 "heun": samplers.heun, "dpmpp_2m": samplers.dpmpp_2m}


def write(rows, out_dir, quick):
    lines = harness.header("Schedule zoo: sliced W2 to the data (lower is better), best per row in bold",
                           "schedule_zoo.py", quick)
    body, wins = harness.table(("problem", "sampler", "evaluations"), KINDS,
                               [((p, s, K), vals) for p, s, K, vals in rows], fmt=lambda v: f"{v:.4f}")
    lines += body + ["| **wins** | | | " + " | ".join(str(wins[k]) for k in KINDS) + " |"]
    text = "\n".join(lines) + "\n"
    harness.save(out_dir, "schedule_zoo", quick, text)
    return text


if __name__ == "__main__":
    harness.main(__doc__, run, write)
