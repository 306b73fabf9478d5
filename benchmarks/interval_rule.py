"""What the interval rule should charge each sampler: which Gaussian recursion, over how many steps, with or without
the data mean.

    python benchmarks/interval_rule.py [--model digits digits16] [--samples 400] [--seeds 2]

For every sampler at 4 and 8 network evaluations, on a shipped model: the Frechet distance of rescaled schedules
on (a) the interval the rule chooses (the default: the sampler's ``surrogate`` recursion over its
``surrogate_steps``), (b) charging DDIM's recursion over the sampler's own steps, (c) charging the sampler's own
recursion, (d) adding the data mean's offset to the rule's distance (``amp_k^2 mu_k^2``, the mean spread like the
variance), (e) the bounds (the model's whole range) and (f) the best of a 3 x 3 grid of ends, all from the same
noise. Writes ``interval_rule.md`` with the command, machine and time.
"""
import contextlib
import argparse
import os
import sys
import time

import numpy as np
import torch

import entropic_fast as ef
from entropic_fast import gaussian, interval, metrics, samplers, schedules

sys.path.insert(0, os.path.dirname(__file__))
from compare_digits import machine, model  # noqa: E402

GRID_MIN, GRID_MAX = np.geomspace(0.05, 0.6, 3), np.geomspace(3.0, 30.0, 3)


def frechet(net, sigmas, sampler, shape, features, to, samples, seeds):
    """Mean and spread over seeds of the Frechet distance of ``samples`` samples through ``sigmas``."""
    out = []
    for seed in range(seeds):
        x = torch.randn((samples, *shape), generator=torch.Generator().manual_seed(seed)) * float(sigmas[0])
        y = samplers.SAMPLERS[sampler](net, x, torch.as_tensor(sigmas), generator=torch.Generator().manual_seed(
            seed + 1000))
        with torch.no_grad():
            f = features(y.float()).double()
        out.append(to(f.mean(0), torch.cov(f.T)))
    return float(np.mean(out)), float(np.std(out))


def rule(prof, steps, sampler, recursion):
    """The interval the rule picks when it charges ``recursion`` over ``steps`` steps."""
    time_ = ef.curves.cumulative(ef.curves.log(prof.sigmas), ef.times.rescaled_rate(prof))
    return interval.choose(prof, steps, time_, sampler, recursion=recursion)


@contextlib.contextmanager
def charging_mean(mean_square):
    """The rule with the data mean's offset added to its distance: a sampler started at mean 0 ends ``-amp_k mu_k``
    off the mean in direction ``k``; ``|mu|^2 = mean_square`` spread over the directions like the variance."""
    plain = interval.frechet

    def frechet(sigmas, lam, w, sampler="ddim"):
        amp, extra = gaussian.sampler_gain(sigmas, lam, sampler)
        mu2 = mean_square * lam / np.sum(w * lam)
        v = sigmas[0] ** 2 * amp**2 + extra
        return np.sum(w * ((np.sqrt(v) - np.sqrt(lam)) ** 2 + amp**2 * mu2), axis=-1)
    interval.frechet = frechet
    try:
        yield
    finally:
        interval.frechet = plain


def intervals(prof, steps, sampler, mean_square):
    """The five intervals of a row, (a) to (e)."""
    surrogate = samplers.get(sampler).surrogate
    with charging_mean(mean_square):
        mean = schedules.ends(prof, steps, sampler=sampler)
    return (schedules.ends(prof, steps, sampler=sampler), rule(prof, steps, sampler, surrogate),
            rule(prof, steps, sampler, sampler), mean, "range")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", nargs="+", default=["digits", "digits16"])
    p.add_argument("--samples", type=int, default=400)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = p.parse_args()
    t0 = time.time()
    lines = ["| model | sampler | evaluations | (a) the rule (default) | (b) DDIM over its own steps | (c) its own "
             "recursion | (d) with the data mean | (e) the whole range | (f) best of the 3 x 3 grid |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name in args.model:
        net, train, ref, features = model(name)
        features = features or ef.comparison.default_features(tuple(ref.shape[1:]), torch.device("cpu"))
        prof = ef.profile(net, train, samples=256, batch_size=1024, control=None, progress=False)
        mean_square = float((train.double().reshape(len(train), -1).mean(0) ** 2).sum())
        with torch.no_grad():
            f = features(ref.float()).double()
        to = metrics.FrechetTo(f.mean(0), torch.cov(f.T))
        for sampler in samplers.SAMPLERS:
            for budget in (4, 8):
                steps = samplers.steps_within(sampler, budget)
                seen = {}  # the same schedule, the same noise: the same distance

                def fd(s):
                    key = tuple(np.asarray(s).tolist())
                    if key not in seen:
                        seen[key] = frechet(net, s, sampler, ref.shape[1:], features, to, args.samples, args.seeds)
                    return seen[key]
                cells = []
                for ends in intervals(prof, steps, sampler, mean_square):
                    s = ef.schedule(prof, steps, "rescaled", interval=ends)
                    cells.append((fd(s), s[-2], s[0]))
                grid = [(fd(ef.schedule(prof, steps, "rescaled", interval=(a, b))), a, b)
                        for a in GRID_MIN for b in GRID_MAX]
                cells.append(min(grid, key=lambda c: c[0][0]))
                text = [f"{m:.1f} ± {sd:.1f} on [{a:.3g}, {b:.3g}]" for (m, sd), a, b in cells]
                lines.append(f"| {name} | {sampler} | {samplers.evaluations(sampler, steps)} | " + " | ".join(text)
                             + " |")
                print(lines[-1], flush=True)
    text = ["# The interval rule: what to charge each sampler", "",
            f"Command: `python benchmarks/interval_rule.py {' '.join(sys.argv[1:])}`  ",
            f"Machine: {machine(torch.device('cpu'))}  ", f"Wall time: {time.time() - t0:.0f} s", "",
            f"Frechet distance (classifier features) of {args.samples} samples x {args.seeds} seed(s) to all the "
            "model's data, rescaled spacing, the same noise in every cell; each cell gives its interval.", "",
            *lines, ""]
    ef.files.write_text(os.path.join(args.out, "interval_rule.md"), "\n".join(text))
    print("\n".join(text))


if __name__ == "__main__":
    main()
