"""Every schedule kind on problems with known truth, with four samplers, side by side.

Problems: isotropic Gaussian (16-D), stationary Gaussian images with a spread spectrum (1x8x8),
Gaussian mixtures in 2-D and 16-D, a point set in 8-D; exact denoisers. Samplers: deterministic
and stochastic DDIM, Heun, DPM++(2M), at 4, 8, 16 and 32 steps. Metric: sliced Wasserstein-2
between the samples and fresh data samples (lower is better; its floor at this sample size is
about 0.02). The spectral kind needs image data, so it runs on the image problem only.

Usage: python benchmarks/schedule_zoo.py [--quick] [--out-dir benchmarks/results]
"""
import argparse
import os
import time

import numpy as np
import torch
from tqdm.auto import tqdm

import entropic_fast as ef
from entropic_fast import analytic, metrics, samplers

KINDS = ["edm", "exponential", "tangent", "entropic", "rescaled", "las", "spectral", "gaussian-optimal"]


def problems():
    g = torch.Generator().manual_seed(0)
    return {
        "gauss-iso-16": analytic.Gaussian(1.0, (16,)),
        "gauss-spread-8x8": analytic.StationaryGaussian(analytic.power_law_spectrum((1, 8, 8), 10.0, 3.0)),
        "gmm-2d": analytic.GMM(torch.randn(8, 2, generator=g, dtype=torch.float64) * 2, 0.05),
        "gmm-16d": analytic.GMM(torch.randn(10, 16, generator=g, dtype=torch.float64), 0.1),
        "points-8d": analytic.PointSet(torch.randn(32, 8, generator=g, dtype=torch.float64)),
    }


def run(quick=False, n=4000, steps=(4, 8, 16, 32), samples=512):
    probs = problems()
    names = list(SAMPLER_NAMES)
    if quick:
        probs = {k: probs[k] for k in ("gauss-spread-8x8", "gmm-2d")}
        n, steps, samples, names = 1000, (4, 8), 64, ["ddim", "heun"]
    rows = []
    bar = tqdm(total=len(probs) * len(names) * len(steps), desc="schedule zoo", leave=False)
    for pname, model in probs.items():
        image = len(model.shape) == 3
        prof = ef.profile(model, model, samples=samples, spectral=image, progress=False)
        ref = model.sample(n, torch.Generator().manual_seed(1))
        pca = model.sample(4000, torch.Generator().manual_seed(2))
        for K in steps:
            sched = {}
            for kind in KINDS:
                if kind == "spectral" and not image:
                    continue
                opts = {"data": pca} if kind == "gaussian-optimal" else {}
                sched[kind] = ef.schedule(prof, K, kind, **opts)
            for sname in names:
                vals = {}
                for kind, sig in sched.items():
                    g = torch.Generator().manual_seed(K)
                    x = torch.randn(n, *model.shape, generator=g, dtype=torch.float64) * sig[0]
                    out = SAMPLER_NAMES[sname](model, x, sig, generator=g)
                    vals[kind] = metrics.sliced_wasserstein(out, ref)
                rows.append((pname, sname, K, vals))
                bar.update()
    bar.close()
    return rows


SAMPLER_NAMES = {"ddim": samplers.ddim, "ddim-stochastic": samplers.SAMPLERS["ddim-stochastic"],
                 "heun": samplers.heun, "dpmpp_2m": samplers.dpmpp_2m}


def write(rows, out_dir, quick):
    wins = dict.fromkeys(KINDS, 0)
    lines = ["# Schedule zoo: sliced W2 to the data (lower is better), best per row in bold", "",
             f"Command: `python benchmarks/schedule_zoo.py{' --quick' if quick else ''}`  ",
             f"Date: {time.strftime('%Y-%m-%d')}", "",
             "| problem | sampler | steps | " + " | ".join(KINDS) + " |", "| --- " * (len(KINDS) + 3) + "|"]
    for pname, sname, K, vals in rows:
        best = min(vals, key=vals.get)
        wins[best] += 1
        cells = [("**%.4f**" if k == best else "%.4f") % vals[k] if k in vals else "-" for k in KINDS]
        lines.append(f"| {pname} | {sname} | {K} | " + " | ".join(cells) + " |")
    lines.append("| **wins** | | | " + " | ".join(str(wins[k]) for k in KINDS) + " |")
    text = "\n".join(lines) + "\n"
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, f"schedule_zoo{'_quick' if quick else ''}.md"), "w") as f:
        f.write(text)
    return text


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="a reduced run (what CI runs)")
    ap.add_argument("--out-dir", default=os.path.join(os.path.dirname(__file__), "results"))
    args = ap.parse_args()
    print(write(run(args.quick), args.out_dir, args.quick))


if __name__ == "__main__":
    main()
