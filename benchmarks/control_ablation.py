"""Evaluations to a 1% and a 3% schedule on the digits model, by what the run changes (issue 42), and the coverage
of the defaults' 95% bands.

Ablation, adaptive runs to the 16-step rescaled schedule's band (``ef.profile(net, data, sigma_grid(grid),
tolerance=...)``), ``--seeds`` seeds each: the plain mean; the two controls as one scalar each (the estimator before
issue 42: the data's Wiener error ``L - E[L]`` and the local ``L - E[L | x0]``, their terms summed); the data's
Wiener control by its parts with the local one summed; every part but the local ``row``; every part (the default);
the default with the pilot of 32 rows per sigma it had before (units of 32 rows then; 16 now); the default on a
24-point grid. Each run's error is the largest relative error of the inner sigmas of its schedule
against a reference profile's (128 points x 4096 samples) on the same interval, the one the run chooses (what its
band binds). Coverage, ``--coverage`` seeds of the defaults and of the plain mean: how often the run's 95% band
holds every inner sigma of the reference schedule (simultaneous), and the share of inner sigmas it holds.

Usage: python benchmarks/control_ablation.py [--quick] [--seeds 3] [--coverage 20] [--out-dir benchmarks/results]
"""
import time
import warnings

import numpy as np
import torch

import entropic_fast as ef
import harness
from entropic_fast import control, digits


class Summed:
    """A control whose parts enter as their sum, one scalar (the estimator's form before issue 42); ``keep``: the
    parts summed (the rest left out)."""

    def __init__(self, ctl, keep, name):
        self.ctl, self.keep, self.name = ctl, keep, name

    def centred(self, x, x0, sigma):
        parts = self.ctl.centred(x, x0, sigma)
        return sum(parts[self.ctl.parts.index(p)] for p in self.keep)

    def to(self, device):
        return Summed(self.ctl.to(device), self.keep, self.name)


class Parts:
    """A control with only some of its parts, each its own scalar."""

    def __init__(self, ctl, keep):
        self.ctl, self.parts, self.name = ctl, tuple(keep), ctl.name

    def centred(self, x, x0, sigma):
        out = self.ctl.centred(x, x0, sigma)
        return torch.stack([out[self.ctl.parts.index(p)] for p in self.parts])

    def to(self, device):
        return Parts(self.ctl.to(device), self.parts)


def settings(data):
    """``(name, control, grid points, pilot)`` of each ablation row."""
    w = control.Wiener.of_rows(data)
    loc = control.LocalWiener.of_rows(data).indexed(data)
    old = [Summed(w, ("data", "noise", "cross"), "wiener"), Summed(loc, ("noise", "cross"), "local")]
    return [("plain mean (control=None)", None, 32, 16),
            ("two controls, each one scalar (before issue 42)", old, 32, 16),
            ("data's Wiener by parts, local summed", [w, old[1]], 32, 16),
            ("every part but local.row", [w, Parts(loc, ("noise", "cross"))], 32, 16),
            ("every part, pilot of 32 per sigma (the default before)", "auto", 32, 32),
            ("every part, pilot of 16 per sigma (the default)", "auto", 32, 16),
            ("every part, 24-point grid", "auto", 24, 16)]


def run_one(net, data, ref, grid, tol, ctl, seed, pilot=16):
    """``(evaluations, error, covered every inner sigma, share covered, seconds)`` of one adaptive run."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        p = ef.profile(net, data, ef.sigma_grid(grid), tolerance=tol, control=ctl, seed=seed, pilot=pilot,
                       progress=False)
        seconds = time.perf_counter() - t
        held = ef.schedules.ends(p, 16)
        s, r = ef.schedule(p, 16, interval=held), ef.schedule(ref, 16, interval=held)
        lo, hi = ef.schedule_band(p, 16, interval=held)
    inner = slice(1, len(s) - 2)
    inside = (lo[inner] <= r[inner]) & (r[inner] <= hi[inner])
    return p.meta["evaluations"], float(np.max(np.abs(s[inner] / r[inner] - 1))), bool(inside.all()), \
        float(inside.mean()), seconds


def run(quick=False, seeds=3, coverage=20):
    t0 = time.time()
    net, data = digits.denoiser(), digits.load("train")[0]
    ref = ef.profile(net, data, ef.sigma_grid(128), samples=256 if quick else 4096, seed=1000, batch_size=1024,
                     progress=False)
    print(f"reference: {ref.meta['evaluations']} evaluations ({time.time() - t0:.0f} s)", flush=True)
    rows = []
    for name, ctl, grid, pilot in settings(data)[:2 if quick else None]:
        for tol in (0.03, 0.01):
            runs = [run_one(net, data, ref, grid, tol, ctl, s, pilot) for s in range(1 if quick else seeds)]
            rows.append({"setting": name, "grid": grid, "tolerance": tol, "runs": runs})
            print(line(rows[-1]), flush=True)
    cover = []
    for name, ctl in (("defaults", "auto"), ("plain mean", None)):
        for tol in (0.03, 0.01):
            runs = [run_one(net, data, ref, 32, tol, ctl, 100 + s) for s in range(2 if quick else coverage)]
            cover.append({"setting": name, "grid": 32, "tolerance": tol, "runs": runs})
            print(cover_line(cover[-1]), flush=True)
    return rows, cover, time.time() - t0


def line(row):
    ev, err = np.array([r[0] for r in row["runs"]]), 100 * np.array([r[1] for r in row["runs"]])
    return (f"| {row['setting']} | {row['grid']} | {100 * row['tolerance']:.0f}% | {ev.mean():,.0f} "
            f"({ev.max():,}) | {np.median(err):.2f} ({err.max():.2f}) |")


def cover_line(row):
    runs = row["runs"]
    ev, err = np.array([r[0] for r in runs]), 100 * np.array([r[1] for r in runs])
    return (f"| {row['setting']} | {100 * row['tolerance']:.0f}% | {len(runs)} | {ev.mean():,.0f} ({ev.max():,}) | "
            f"{np.median(err):.2f} ({err.max():.2f}) | {sum(r[2] for r in runs)}/{len(runs)} | "
            f"{100 * np.mean([r[3] for r in runs]):.1f}% |")


def write(rows, cover, seconds, out_dir, quick):
    head = harness.header("Evaluations to an accurate schedule: what the controls change, and the bands' coverage",
                          "control_ablation.py", quick, __doc__.split("\n\n")[1].replace("\n", " "),
                          seconds=seconds)
    body = head + ["| setting | grid | tolerance | evaluations, mean (max) | error %, median (worst) |",
                   "| --- | --- | --- | --- | --- |"] + [line(r) for r in rows]
    body += ["", "| run | tolerance | seeds | evaluations, mean (max) | error %, median (worst) | band holds every "
             "inner sigma | inner sigmas held |", "| --- | --- | --- | --- | --- | --- | --- |"]
    body += [cover_line(r) for r in cover]
    text = "\n".join(body) + "\n" + harness.findings(out_dir, "control_ablation", quick)
    harness.save(out_dir, "control_ablation", quick, text)
    return text


def main():
    args = harness.arguments(__doc__, seeds=(int, 3, "seeds per ablation cell"),
                             coverage=(int, 20, "seeds of the coverage rows"))
    print(write(*run(args.quick, args.seeds, args.coverage), args.out_dir, args.quick))


if __name__ == "__main__":
    main()
