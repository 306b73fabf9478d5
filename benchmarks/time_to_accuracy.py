"""Wall time to an accurate schedule: the adaptive run's defaults (control, grid, tolerance) chosen by time.

For each model, control setting (None, ``"wiener"``, ``"both"``, and ``"auto"``, the default: decided after
the pilot by measured cost and variance), grid (32, 64, 128 points) and tolerance
(3%, 1%), an adaptive ``ef.profile`` targeting the 16-step rescaled schedule, over several seeds (two for the costly net): the wall time
of the call, the rows evaluated and the error reached, the largest relative error ``|s / s_ref - 1|`` of the
inner sigmas against a reference profile (128 points, 4096 samples per sigma, both control variates). Models
of four costs per row: the GMM (analytic, fused: nearly free, so the estimator's own costs show), a cheap
untrained conv net on 256-value Gaussian rows (where the controls cost most beside the network), the shipped
digits model, and the digits model with ``--heavy`` times its work added per row (the same errors at a higher
cost per row: a stand-in for a larger network).

Usage: python benchmarks/time_to_accuracy.py [--quick] [--seeds 3] [--heavy 4] [--grids 32,64,128]
       [--out-dir benchmarks/results]
"""
import json
import os
import time
import warnings

import numpy as np
import torch

import entropic_fast as ef
import harness
from entropic_fast.files import write_text
from sample_efficiency import error  # the largest relative error of the inner sigmas

CONTROLS = (None, "wiener", "both", "auto")
GRIDS = (32, 64, 128)
TOLERANCES = (0.03, 0.01)


class Heavy(torch.nn.Module):
    """The digits model plus ``factor - 1`` times its work on each row, whose result is discarded."""

    def __init__(self, net, factor):
        super().__init__()
        self.net, self.factor = net, factor

    def forward(self, x, sigma):
        out = self.net(x, sigma)
        for _ in range(self.factor - 1):
            out = out + 0 * self.net(x, sigma)
        return out


def models(quick, heavy):
    """``(name, denoiser, data, sigma_min, batch)`` of each model measured."""
    g = torch.Generator().manual_seed(0)
    gmm = ef.analytic.GMM(torch.randn(8, 16, generator=g, dtype=torch.float64) * 1.5, 0.25)
    out = [("GMM, 8 components in 16-D (fused)", gmm, gmm, 0.01, 1024)]
    if not quick:
        from test_speed_estimator import SmallConvNet
        torch.manual_seed(0)
        out.append(("small conv net, 1x16x16 Gaussian rows", SmallConvNet().eval(), torch.randn(2000, 1, 16, 16),
                    0.002, 256))
    from entropic_fast import digits
    net, data = digits.denoiser(), digits.load("train")[0]
    out.append(("digits model", net, data, 0.002, 1024))
    if not quick:
        out.append((f"digits model, {heavy}x the work per row", Heavy(net, heavy), data, 0.002, 1024))
    return out


def reference(den, data, lo, batch, samples):
    """The reference profile and its 16-step rescaled schedule's own 95% band (relative half-width, whole range)."""
    ref = ef.profile(den, data, ef.sigma_grid(128, lo, 80), samples=samples, seed=1000, batch_size=batch,
                     control="both", progress=False)
    sched = ef.schedule(ref, 16, interval="range")
    band = ef.schedule_band(ref, 16, interval="range")
    return ref, float(np.max(band[1][1:-2] / sched[1:-2] - 1))


def cell(den, data, lo, batch, control, points, tolerance, seed):
    """One adaptive run: ``(seconds, evaluations, schedule, its ends)``: the 16-step schedule on the interval the
    run's profile chooses, what its band binds."""
    grid = ef.sigma_grid(points, lo, 80)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a budget warning is part of the result (evaluations, error)
        t = time.perf_counter()
        p = ef.profile(den, data, grid, tolerance=tolerance, control=control, seed=seed, batch_size=batch,
                       progress=False)
        seconds = time.perf_counter() - t
        held = ef.schedules.ends(p, 16)
        return seconds, p.meta["evaluations"], ef.schedule(p, 16, interval=held), held


def configs(quick, costly, grids=GRIDS):
    """The (control, grid, tolerance) cells of a model: all of them, fewer for the costly one or a quick run."""
    grids = (32,) if quick else grids[:2] if costly else grids
    controls = (None, "auto") if quick else CONTROLS
    return [(c, g, t) for t in (TOLERANCES[:1] if quick else TOLERANCES) for c in controls for g in grids]


def run(quick=False, seeds=3, heavy=4, grids=GRIDS):
    torch.set_num_threads(os.cpu_count() or 1)
    t0 = time.time()
    results = []
    refs = {}
    for name, den, data, lo, batch in models(quick, heavy):
        costly = isinstance(den, Heavy)
        net = den.net if costly else den  # the costly net's errors are the digits model's
        if id(net) not in refs:
            refs[id(net)] = reference(net, data, lo, batch, 256 if quick else 4096)
        ref, band = refs[id(net)]
        print(f"{name}: reference band +-{100 * band:.2f}% ({time.time() - t0:.0f} s)", flush=True)
        for control, points, tol in configs(quick, costly, grids):
            n = min(seeds, 2) if costly else seeds  # the costly net: two seeds
            runs = [cell(den, data, lo, batch, control, points, tol, s) for s in harness.seeds(n, quick, 1)]
            row = {"model": name, "control": control, "grid": points, "tolerance": tol, "band": band,
                   "seconds": [r[0] for r in runs], "evaluations": [r[1] for r in runs],
                   "error": [error(r[2], ef.schedule(ref, 16, interval=r[3])) for r in runs]}
            results.append(row)
            print(line(row), flush=True)
    return results, time.time() - t0


def line(row):
    """A markdown row: model, control, grid, tolerance, seconds, evaluations, error median (worst)."""
    err = np.asarray(row["error"]) * 100
    return (f"| {row['model']} | {row['control']} | {row['grid']} | {100 * row['tolerance']:.0f}% | "
            f"{np.median(row['seconds']):.2f} ({np.max(row['seconds']):.2f}) | {np.mean(row['evaluations']):.0f} | "
            f"{np.median(err):.2f} ({np.max(err):.2f}) |")


def best(results):
    """Per model and tolerance, the fastest cell whose worst error is within 1.5x the tolerance."""
    out = []
    for name in dict.fromkeys(r["model"] for r in results):
        for tol in TOLERANCES:
            ok = [r for r in results if r["model"] == name and r["tolerance"] == tol and max(r["error"]) <= 1.5 * tol]
            if ok:
                r = min(ok, key=lambda r: np.median(r["seconds"]))
                out.append(f"- {name}, {100 * tol:.0f}%: control={r['control']!r}, {r['grid']}-point grid, "
                           f"{np.median(r['seconds']):.2f} s, {np.mean(r['evaluations']):.0f} evaluations")
    return out


def write(result, out_dir, quick, options=""):
    results, seconds = result
    head = harness.header("Wall time to an accurate schedule", "time_to_accuracy.py" + options, quick,
                          "Adaptive runs targeting the 16-step rescaled schedule (`ef.profile(net, data, "
                          "sigma_grid(grid), tolerance=..., control=...)`). `seconds`: wall time of the call, median "
                          "over seeds (slowest in brackets); `evaluations`: mean rows evaluated, pilot included; "
                          "`error`: largest relative error (%) of the inner sigmas against the reference (128 points x "
                          "4096 samples, both control variates) on the same interval, the one the run's profile "
                          "chooses (what its band binds), median (worst). Every cell ran in one process on "
                          f"the machine above, side by side; {max(len(r['seconds']) for r in results)} seeds (at most 2 for the "
                          "costly net). The controls are fitted once per data tensor and request (the last kept): "
                          "in a cell the first seed fits them (the slowest, in brackets), the next reuse them.",
                          seconds=seconds)
    refs = {r["model"]: r["band"] for r in results}
    head += [f"Reference band (95%, relative) of {m}: +-{100 * b:.2f}%" for m, b in refs.items()] + [""]
    head += ["| model | control | grid | tolerance | seconds | evaluations | error % |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    body = head + [line(r) for r in results] + ["", "Fastest within 1.5x the tolerance (worst seed):", ""]
    text = "\n".join(body + best(results)) + "\n" + harness.findings(out_dir, "time_to_accuracy", quick)
    harness.save(out_dir, "time_to_accuracy", quick, text)
    write_text(os.path.join(out_dir, f"time_to_accuracy{'_quick' if quick else ''}.json"), json.dumps(results, indent=1))
    return text


def main():
    args = harness.arguments(__doc__, seeds=(int, 3, "seeds per cell"), heavy=(int, 4, "work factor of the costly net"),
                             grids=(str, "32,64,128", "grid sizes, comma-separated"))
    grids = tuple(int(g) for g in args.grids.split(","))
    opts = "" if args.quick else f" --seeds {args.seeds} --heavy {args.heavy} --grids {args.grids}"
    print(write(run(args.quick, args.seeds, args.heavy, grids), args.out_dir, args.quick, opts))


if __name__ == "__main__":
    main()
