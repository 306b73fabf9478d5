"""Does ``ef.tune`` pick what samples best? On both shipped models, for the rows where the rule does not win
outright, every candidate interval of the search is scored as ``ef.tune`` scores it (Frechet distance on the
tuning's own noise seeds, at two sample sizes) and on held-out noise (the comparison's seeds 0, 1, 2 x 500, as in
``compare_<model>.md``); reported: the rule's interval, each size's pick, the best candidate, all held out, the
rank correlation of the tuning score with the held-out distance, the cost, and two references: the best other
kind of the committed comparison (the peers on the model's range: the same noise, independent of the profile) and
the exact ODE (Heun at 64 steps on the model's range), the model's own answer without discretisation; and the
whole tuned schedule (interval and spacing) held out.

    python benchmarks/tuning_gain.py [--models digits digits16] [--sizes 256 1024]

Writes benchmarks/results/tuning_gain.md, tuning_gain.json and tuning_gain.png.
"""
import argparse
import dataclasses
import json
import os
import sys
import time

import numpy as np
import torch
from scipy.stats import spearmanr

import entropic_fast as ef
from entropic_fast import samplers, tuning
from entropic_fast.comparison import Cell, distances
from entropic_fast.options import Checkpointing, Throughput

sys.path.insert(0, os.path.dirname(__file__))
from compare_digits import OURS, machine, model, verdict

ROWS = (("heun", 15), ("dpmpp_2m", 8), ("dpmpp_2m", 16), ("ddim", 8))
HELD_SEEDS, HELD_SAMPLES = (0, 1, 2), 500  # the committed comparison's noise
RESULTS = os.path.join(os.path.dirname(__file__), "results")


def held_out(net, ref, features, prof, sampler, budget, pairs):
    """Held-out Frechet distance (mean, std over the comparison's seeds) of each candidate interval."""
    spec = samplers.get(sampler)
    cells = [Cell(sampler, budget, f"{spec.kind}[{a:.6g},{b:.6g}]") for a, b in pairs]
    job, r = tuning._job(net, ref, prof, dict(zip(cells, pairs)), kind=spec.kind,
                         steps=samplers.steps_within(sampler, budget), samples=HELD_SAMPLES, seeds=1,
                         features=features, labels=None, checkpointing=Checkpointing(None, seconds=300.0),
                         throughput=Throughput(1024, None))
    fd, _ = distances(dataclasses.replace(job, seeds=list(HELD_SEEDS)), r, r.mu.numel(), False, "held out")
    per = np.array(fd).reshape(len(cells), len(HELD_SEEDS))
    return per.mean(1), per.std(1)


def exact_ode(net, ref, features):
    """The model's own answer: Heun at 64 steps (127 evaluations), EDM spacing on the model's range."""
    r = ef.compare(net, ref, profile=None, kinds=["edm"], steps=[127], samplers=["heun"], samples=HELD_SAMPLES,
                   seeds=len(HELD_SEEDS), features=features, progress=False, batch_size=1024)
    return r.rows()[0][-1]["edm"]


def best_other(name, sampler, budget):
    """The best kind not ours in the committed comparison's row (the peers run on the model's range)."""
    with open(os.path.join(RESULTS, f"compare_{name}.json")) as f:
        cells = [c for c in json.load(f)["cells"] if (c["sampler"], c["evaluations"]) == (sampler, budget)]
    other = min((c for c in cells if c["kind"] not in OURS), key=lambda c: np.mean(c["frechet"]))
    return other["kind"], float(np.mean(other["frechet"])), float(np.std(other["frechet"]))


def row(net, ref, features, prof, sampler, budget, sizes):
    """One row: every candidate tuned at each size and held out."""
    tuned = {n: ef.tune(net, ref, prof, sampler, budget, samples=n, features=features, progress=False,
                        batch_size=1024) for n in sizes}  # the interval, then the spacings on the best
    pairs = [c[:2] for c in tuned[sizes[0]].candidates]
    held, spread = held_out(net, ref, features, prof, sampler, budget, pairs)
    out = {"pairs": pairs, "held": held.tolist(), "held_std": spread.tolist()}
    for n, t in tuned.items():
        score = np.array([c[2] for c in t.candidates])
        pick = int(score.argmin())
        out[n] = {"score": score.tolist(), "pick": pick, "rho": float(spearmanr(score, held)[0]),
                  "evaluations": t.meta["evaluations"], "seconds": t.meta["seconds"], "spacing": t.meta["spacing"],
                  "spaced": spaced_held_out(net, ref, features, t, sampler, budget)}
    return out


def spaced_held_out(net, ref, features, tuned, sampler, budget):
    """Held-out (mean, std) of the whole tuned schedule, interval and spacing, as ``ef.schedule`` builds it from
    the tuned profile (the interval's alone when the search kept the default spacing)."""
    kind = samplers.get(sampler).kind
    r = ef.compare(net, ref, profile=tuned.profile, kinds=[kind], steps=[budget], samplers=[sampler],
                   samples=HELD_SAMPLES, seeds=list(HELD_SEEDS), features=features, progress=False, batch_size=1024)
    return r.rows()[0][-1][kind]


def fmt(r, i):
    """Candidate ``i``'s held-out distance, mean ± std."""
    return f"{r['held'][i]:.2f} ± {r['held_std'][i]:.2f}"


def table(name, rows, sizes, ode):
    head = ["sampler", "evaluations", "the rule", *[f"tuned, {n} samples" for n in sizes], "best candidate",
            *[f"tuned with its spacing, {n}" for n in sizes],
            *[f"rank corr. {n}" for n in sizes], f"cost at {sizes[-1]}", "best other (model's range)",
            f"tuned at {sizes[-1]} against it"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for (sampler, budget), r in rows.items():
        best = int(np.argmin(r["held"]))
        k, m, s = r["other"]
        cost = r[sizes[-1]]
        lines.append(f"| {sampler} | {budget} | {fmt(r, 0)} | " + " | ".join(fmt(r, r[n]["pick"]) for n in sizes)
                     + f" | {fmt(r, best)} | "
                     + " | ".join(f"{r[n]['spacing']} {r[n]['spaced'][0]:.2f} ± {r[n]['spaced'][1]:.2f}"
                                  for n in sizes) + " | "
                     + " | ".join(f"{r[n]['rho']:.2f}" for n in sizes)
                     + f" | {cost['evaluations']:,} evaluations, {cost['seconds']:.0f} s | {k} {m:.2f} ± {s:.2f} | "
                     + f"{verdict(cost['spaced'], (m, s), (None, 0.0))} |")
    return [f"## {name}", "", f"The exact ODE (Heun, 64 steps, EDM spacing on the model's range): "
            f"{ode[0]:.2f} ± {ode[1]:.2f}.", "", *lines, ""]


def figure(results, sizes, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = list(results)
    fig, axes = plt.subplots(len(names), len(sizes), figsize=(4.2 * len(sizes), 3.6 * len(names)), squeeze=False)
    for i, name in enumerate(names):
        for j, n in enumerate(sizes):
            ax = axes[i][j]
            for (sampler, budget), r in results[name]["rows"].items():
                ax.scatter(r[n]["score"], r["held"], s=12, label=f"{sampler} {budget} (rho {r[n]['rho']:.2f})")
            ax.set_xlabel(f"tuning score ({n} samples, its own seeds)")
            ax.set_ylabel("held-out Frechet (3 x 500)")
            ax.set_title(name, fontsize=10)
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["digits", "digits16"], choices=("digits", "digits16"))
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 1024], help="tuning samples per candidate")
    args = p.parse_args()
    t0 = time.time()
    results = {}
    for name in args.models:
        net, train, ref, features = model(name)
        prof = ef.profile(net, train, samples=256, batch_size=1024, spectral=True, control=None, progress=False)
        rows = {r: {"other": best_other(name, *r)} for r in ROWS}  # read first: a missing row fails at once
        for sampler, budget in ROWS:
            rows[(sampler, budget)].update(row(net, ref, features, prof, sampler, budget, args.sizes))
            print(name, sampler, budget, f"{time.time() - t0:.0f} s", flush=True)
        results[name] = {"rows": rows, "ode": exact_ode(net, ref, features)}
    text = ["# Tuning the interval on the model: does the search's score pick what samples best?", "",
            f"Command: `python benchmarks/tuning_gain.py {' '.join(sys.argv[1:])}`  ",
            f"Machine: {machine(torch.device('cpu'))}  ", f"Wall time: {time.time() - t0:.0f} s", "",
            "`ef.tune` scores the rule's interval and up to 24 around it (each end x 0.5 .. 2) by the Frechet distance "
            "of its samples' features on noise seeds no comparison draws. Here each candidate is also held out: "
            f"scored on the comparison's noise ({len(HELD_SEEDS)} seeds x {HELD_SAMPLES} samples, the seeds of "
            "`compare_<model>.md`), so the columns are held-out distances (mean ± std over seeds) of the interval "
            "each choice makes; rank corr. is Spearman's between the tuning score and the held-out distance over "
            "the candidates. Profiles as `compare_digits.py` makes them; the default kind of each sampler "
            "(rescaled). Tuned with its spacing: the whole schedule `ef.schedule` builds from the tuned profile, "
            "the best interval spaced by the best of rescaled, edm and exponential on it (named), held out. "
            "Best other: the committed comparison's best kind not ours (peers on the model's range, the same "
            "noise).", ""]
    for name, r in results.items():
        text += table(name, r["rows"], args.sizes, r["ode"])
    text += ["Tuned against the best other: win, tie (a difference within the larger spread over seeds) or loss, as "
             "in `compare_<model>.md`.", "", "![tuning](tuning_gain.png)", ""]
    ef.files.write_text(os.path.join(RESULTS, "tuning_gain.json"), json.dumps(
        {name: {"ode": r["ode"], "rows": [{"sampler": k[0], "evaluations": k[1], **v} for k, v in r["rows"].items()]}
         for name, r in results.items()}, default=float))
    figure(results, args.sizes, os.path.join(RESULTS, "tuning_gain.png"))
    ef.files.write_text(os.path.join(RESULTS, "tuning_gain.md"), "\n".join(text))
    print("\n".join(text))


if __name__ == "__main__":
    main()
