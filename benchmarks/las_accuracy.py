"""How well a sampled profile fixes each schedule: LAS against rescaled and entropic, side by side.

For each model, profiles of 256 and 1024 samples per sigma (several seeds, default 128-point grid)
give 16-step schedules; the error is the largest |log sigma| difference of an inner step from the
reference schedule of the same kind: the closed form for Gaussian data, the exact curve for the 2-D
point set (quadrature: ``point_set_mse``), the same kind from a profile 16x larger for the digits
model. Also the old LAS estimator (slope of the isotonic fit), for comparison.

Usage: python benchmarks/las_accuracy.py [--quick] [--seeds 6] [--digits-seeds 4] [--out-dir benchmarks/results]
"""
import os
import time

import numpy as np
import torch

import entropic_fast as ef
import harness
from entropic_fast import curves, schedules

STEPS = 16
KINDS = ("rescaled", "entropic", "las")


def old_las(prof):
    """The estimator before issue 12: PCHIP slope of log of the isotonic fit."""
    s, e = prof.sigmas, schedules.error_curve(prof)
    loge = np.log(np.maximum(e, 1e-300 * max(float(e.max()), 1e-300)))
    f = np.sqrt(2.0 * e * np.maximum(curves.slopes(np.log(s), loge), 0.0)) / s
    u = np.log(s)
    lo, hi = curves.integral_at(u, f, [u[0], u[-1]])
    t = hi - np.arange(STEPS) / (STEPS - 1) * (hi - lo)
    return np.concatenate([[s[-1]], np.exp(curves.invert(u, f, t[1:-1])), [s[0], 0.0]])


def point_set_mse(points, sigmas, nodes=2.4e7, chunk=6e6):
    """Exact MMSE of a 2-D point set by quadrature: ``int p_s(x) tr Cov(x0 | x) dx`` on a grid fine enough for
    the posterior's transitions (width ``s^2 / spacing``), at most ``nodes`` nodes. Below the sigmas this affords
    (with the default, the error is then below 1e-9 of its top), ``log e`` is extended linearly in ``1 / s^2``,
    its asymptotic form."""
    pts = torch.as_tensor(points, dtype=torch.float64)
    lo_pt, hi_pt = float(pts.min()), float(pts.max())
    out = np.full(len(sigmas), np.nan)
    for j, s in enumerate(sigmas):
        lo, hi = lo_pt - 9 * s, hi_pt + 9 * s
        m = int(np.ceil((hi - lo) / min(s / 10, s * s / 12))) + 1
        if m * m > nodes:
            continue
        xs = torch.linspace(lo, hi, m, dtype=torch.float64)
        h, total = float(xs[1] - xs[0]), 0.0
        rows = max(1, int(chunk // m))
        for i in range(0, m, rows):
            x = torch.stack(torch.meshgrid(xs[i:i + rows], xs, indexing="ij"), -1).reshape(-1, 2)
            logit = -torch.cdist(x, pts) ** 2 / (2 * s * s)
            lse = torch.logsumexp(logit, 1, keepdim=True)
            p = torch.exp(logit - lse)
            tr_cov = (p * torch.cdist(p @ pts, pts) ** 2).sum(1)
            total += float((torch.exp(lse[:, 0]) * tr_cov).sum()) / (len(pts) * 2 * np.pi * s * s)
        out[j] = total * h * h
    i0, i1 = np.flatnonzero(np.isfinite(out))[:2]
    slope = (np.log(out[i1]) - np.log(out[i0])) / (sigmas[i1] ** -2.0 - sigmas[i0] ** -2.0)
    low = ~np.isfinite(out)
    out[low] = np.exp(np.log(out[i0]) + slope * (sigmas[low] ** -2.0 - sigmas[i0] ** -2.0))
    return out


def error(a, b):
    return float(np.max(np.abs(np.log(a[1:-2] / b[1:-2]))))


def measure(name, make, reference, seeds, sizes=(256, 1024)):
    rows = []
    for n in sizes:
        errs = {k: [] for k in KINDS + ("las (old)",)}
        for seed in range(seeds):
            p = make(n, seed)
            for k in KINDS:
                errs[k].append(error(ef.schedule(p, STEPS, k, interval="range"), reference[k]))
            errs["las (old)"].append(error(old_las(p), reference["las"]))
        med = {k: np.median(v) for k, v in errs.items()}
        rows.append(f"| {name} | {n} | " + " | ".join(f"{med[k]:.4f} ({np.max(errs[k]):.4f})" for k in errs)
                    + f" | {med['las'] / med['rescaled']:.2f} |")
        print(rows[-1], flush=True)
    return rows


def main():
    args = harness.arguments(__doc__, seeds=(int, 6, "seeds per analytic model"),
                             digits_seeds=(int, 4, "seeds for the digits model"))
    print(write(run(args.quick, args.seeds, args.digits_seeds), args.out_dir, args.quick,
                f" --seeds {args.seeds} --digits-seeds {args.digits_seeds}"))


def run(quick=False, seeds=6, digits_seeds=4):
    """Rows of the table; quick: 2 seeds, 64 and 128 samples, no digits model."""
    torch.set_num_threads(os.cpu_count() or 1)
    t0 = time.time()
    s = ef.sigma_grid(64 if quick else 128)
    sizes = (64, 128) if quick else (256, 1024)
    seeds = 2 if quick else seeds
    rows = []
    gauss = ef.analytic.Gaussian(0.25, (4,))
    exact = ef.Profile.from_curve(s, gauss.mse(s), 4)
    ref = {k: ef.schedule(exact, STEPS, k, interval="range") for k in KINDS}
    # control=None: the plain mean, the noisy curve LAS has to differentiate (on Gaussian data the control
    # variates would make the profile exact; their gains are measured in sample_efficiency.py)
    rows += measure("Gaussian d=4, c=0.5 (closed form)",
                    lambda n, seed: ef.profile(gauss, gauss, s, samples=n, seed=seed, control=None, progress=False),
                    ref, seeds, sizes)
    pts = torch.stack(torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="ij"), -1).reshape(16, 2) * 2
    ps = ef.analytic.PointSet(pts.double())
    exact = ef.Profile.from_curve(s, point_set_mse(pts, s, 1e6 if quick else 2.4e7), 2)
    ref = {k: ef.schedule(exact, STEPS, k, interval="range") for k in KINDS}
    rows += measure("16 atoms in 2-D, spacing 2 (exact curve)",
                    lambda n, seed: ef.profile(ps, ps, s, samples=n, seed=seed, progress=False), ref, seeds, sizes)
    if not quick:
        from entropic_fast import digits
        net, data = digits.denoiser(), digits.load("train")[0]
        big = ef.profile(net, data, s, samples=4096, seed=1000, batch_size=1024, control=None, progress=False)
        ref = {k: ef.schedule(big, STEPS, k, interval="range") for k in KINDS}
        rows += measure("digits model (4096-sample reference)",
                        lambda n, seed: ef.profile(net, data, s, samples=n, seed=seed, batch_size=1024, control=None,
                                                   progress=False), ref, digits_seeds)
    return rows, time.time() - t0


def write(result, out_dir, quick, options=""):
    rows, seconds = result
    head = harness.header("Schedules from sampled profiles: LAS against rescaled and entropic",
                          "las_accuracy.py" + ("" if quick else options), quick,
                          f"Largest |log sigma| error of the {STEPS - 2} inner steps of a {STEPS}-step schedule "
                          "against the reference of the same kind, median over seeds (worst in brackets). "
                          "`las (old)` is the estimator before issue 12 (slope of the isotonic fit). The last "
                          "column is LAS's median error over rescaled's.", seconds=seconds)
    head += ["| model | samples | " + " | ".join(KINDS + ("las (old)",)) + " | las / rescaled |",
             "| --- " * (len(KINDS) + 4) + "|"]
    text = "\n".join(head + rows) + "\n" + harness.findings(out_dir, "las_accuracy", quick)
    harness.save(out_dir, "las_accuracy", quick, text)
    return text


if __name__ == "__main__":
    main()
