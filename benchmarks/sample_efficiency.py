"""Network evaluations for an accurate schedule: the paper's fixed protocol against adaptive profiling and
the Wiener control variate, on the digits model, a GMM and a point set.

Error: the largest relative error ``|s / s_ref - 1|`` of the inner sigmas (all but the first, the last
non-zero and the 0) of the 8-, 16- and 32-step rescaled schedules (and entropic on the point set)
against the same kind from a reference profile of 4096 samples per sigma (16x the 256 of a typical
fixed run; the digits model's reference with both control variates, the analytic models' 16384 per
sigma), over several seeds. Methods: the paper (1024 samples per sigma, plain mean), a fixed 64 per
sigma with and without the control variates (``control="both"``: the data's Wiener denoiser and the
per-cluster ones), and adaptive runs at 1% and 0.5% (16-step rescaled target, or every reported
schedule), on the 128-point grid and on coarser ones.

Usage: python benchmarks/sample_efficiency.py [--quick] [--seeds 4] [--out-dir benchmarks/results]
"""
import os
import time
import warnings

import numpy as np
import torch

import entropic_fast as ef
import harness

STEPS = (8, 16, 32)
COLUMNS = [(k, n) for k in ("rescaled", "entropic") for n in STEPS]


def methods(quick):
    """``(name, profile arguments, grid points)``: what each row measures."""
    every = {"steps": list(STEPS)}
    cv = {"control": "both"}
    rows = [
        ("paper: 1024 per sigma, plain", {"samples": 1024, "control": None}, 128),
        ("fixed 64 per sigma, plain", {"samples": 64, "control": None}, 128),
        ("fixed 64 per sigma, control variates", {"samples": 64, **cv}, 128),
        ("adaptive 1%, plain", {"tolerance": 0.01, "control": None}, 128),
        ("adaptive 1%, control variates", {"tolerance": 0.01, **cv}, 128),
        ("adaptive 1%, control variates, 64-point grid", {"tolerance": 0.01, **cv}, 64),
        ("adaptive 1%, control variates, 32-point grid", {"tolerance": 0.01, **cv}, 32),
        ("adaptive 1% for 8/16/32 steps, control variates, 32-point grid", {"tolerance": 0.01, **cv, **every}, 32),
        ("adaptive 0.5%, control variates, 32-point grid", {"tolerance": 0.005, **cv}, 32),
    ]
    return rows[1:6] if quick else rows


def error(a, b):
    return float(np.max(np.abs(a[1:-2] / b[1:-2] - 1)))


def measure(model, den, data, lo, hi, reference, kinds, seeds, quick, batch):
    """Table rows of one model: per method, evaluations and errors (median, worst over seeds)."""
    refs = {(k, n): ef.schedule(reference, n, k, interval="range") for k in kinds for n in STEPS}
    rows = []
    for name, kw, points in methods(quick):
        if kinds != ("rescaled",) and "tolerance" in kw:
            kw = {**kw, "kind": list(kinds)}
        grid = ef.sigma_grid(points // 2 if quick else points, lo, hi)
        evals, errs = [], {key: [] for key in refs}
        for seed in seeds:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a budget warning is part of the result (evaluations)
                p = ef.profile(den, data, grid, seed=seed, batch_size=batch, progress=False, **kw)
                for k, n in refs:
                    errs[k, n].append(error(ef.schedule(p, n, k, interval="range"), refs[k, n]))
            evals.append(p.meta["evaluations"])
        cells = [f"{np.mean(evals):.0f}"] + [f"{100 * np.median(errs[c]):.2f} ({100 * np.max(errs[c]):.2f})"
                                             if c in errs else "-" for c in COLUMNS]
        rows.append(f"| {model} | {name} | " + " | ".join(cells) + " |")
        print(rows[-1], flush=True)
    return rows


def run(quick=False, seeds=4):
    torch.set_num_threads(os.cpu_count() or 1)
    t0 = time.time()
    seeds = harness.seeds(seeds, quick, 1)
    big = 256 if quick else 4096
    rows = []
    pts = torch.stack(torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="ij"), -1).reshape(16, 2) * 2
    points = ef.analytic.PointSet(pts.double())
    g = torch.Generator().manual_seed(0)
    gmm = ef.analytic.GMM(torch.randn(8, 16, generator=g, dtype=torch.float64) * 1.5, 0.25)
    for name, model, kinds in (("GMM, 8 components in 16-D", gmm, ("rescaled",)),
                               ("16 atoms in 2-D, spacing 2", points, ("rescaled", "entropic"))):
        ref = ef.profile(model, model, ef.sigma_grid(128, 0.01, 80), samples=4 * big, seed=1000, progress=False)
        rows += measure(name, model, model, 0.01, 80, ref, kinds, seeds, quick, 1024)
    if not quick:
        from entropic_fast import digits
        net, data = digits.denoiser(), digits.load("train")[0]
        ref = ef.profile(net, data, ef.sigma_grid(128, 0.002, 80), samples=big, seed=1000, batch_size=1024,
                         control="both", progress=False)
        band = ef.schedule_band(ref, 16, interval="range")
        ref_err = float(np.max(band[1][1:-2] / ef.schedule(ref, 16, interval="range")[1:-2] - 1))
        rows += measure("digits model", net, data, 0.002, 80, ref, ("rescaled",), seeds, quick, 1024)
        rows.append(f"| digits model | (the reference's own 95% band, 16 steps) | {ref.meta['evaluations']} | - | "
                    f"+-{100 * ref_err:.2f} | - | - | - | - |")
    return rows, time.time() - t0


def write(result, out_dir, quick, options=""):
    rows, seconds = result
    head = harness.header("Network evaluations for an accurate schedule", "sample_efficiency.py" + options, quick,
                          "Largest relative error (%) of the inner sigmas of the rescaled schedules (and entropic on "
                          "the point set) against the reference of the same kind: median over seeds, worst in "
                          "brackets. `evaluations` is the mean number of denoiser rows evaluated "
                          "(`meta['evaluations']`, pilot included). The adaptive runs target the 16-step rescaled "
                          "schedule (also entropic on the point set) unless a row says otherwise.",
                          seconds=seconds)
    head += ["| model | method | evaluations | " + " | ".join(f"{k} {n}" for k, n in COLUMNS) + " |",
             "| --- " * (len(COLUMNS) + 3) + "|"]
    text = "\n".join(head + rows) + "\n" + harness.findings(out_dir, "sample_efficiency", quick)
    harness.save(out_dir, "sample_efficiency", quick, text)
    return text


def main():
    args = harness.arguments(__doc__, seeds=(int, 4, "seeds per model"))
    print(write(run(args.quick, args.seeds), args.out_dir, args.quick, "" if args.quick else f" --seeds {args.seeds}"))


if __name__ == "__main__":
    main()
