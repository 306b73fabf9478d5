"""Does a 3% schedule sample as well as a precise one? The tolerance the default adaptive run stops at, checked
by the samples it gives.

On the digits model: the rescaled schedule (8 and 16 DDIM steps, and DPM++(2M) at 8) from a reference profile
(128 points x 1024 samples, both control variates) and from default adaptive runs at 3% and at 1% (one run per
profile seed), each scored by ``ef.compare``'s Frechet distance (700 samples, the same noise for every profile,
3 sampling seeds). Also the largest relative difference of each schedule from the reference's.

Usage: python benchmarks/schedule_tolerance.py [--quick] [--out-dir benchmarks/results]
"""
import os
import time

import torch

import entropic_fast as ef
import harness
from sample_efficiency import error  # the largest relative error of the inner sigmas

CELLS = (("ddim", 8), ("ddim", 16), ("dpmpp_2m", 8))


def profiles(net, data, quick):
    """``{name: Profile}``: the reference and adaptive runs at 3% and 1% (profile seeds 0..2, or 0 quick)."""
    out = {"reference": ef.profile(net, data, ef.sigma_grid(128), samples=64 if quick else 1024, seed=1000,
                                   batch_size=1024, control="both", progress=False)}
    for tol in (0.03, 0.01):
        for seed in harness.seeds(3, quick, 1):
            out[f"{100 * tol:.0f}%, profile seed {seed}"] = ef.profile(net, data, tolerance=tol, seed=seed,
                                                                        batch_size=1024, progress=False)
    return out


def run(quick=False):
    torch.set_num_threads(os.cpu_count() or 1)
    t0 = time.time()
    from entropic_fast import digits
    net, data = digits.denoiser(), digits.load("all")[0]
    rows = []
    profs = profiles(net, data, quick)
    ref = {n: ef.schedule(profs["reference"], n, interval="range") for n in (8, 16)}
    for name, prof in profs.items():
        result = ef.compare(net, data, profile=prof, kinds=["rescaled"], steps=sorted({b for _, b in CELLS}),
                            samplers=sorted({s for s, _ in CELLS}), samples=100 if quick else 700,
                            seeds=1 if quick else 3, progress=False)
        fd = {(s, b): v["rescaled"] for s, b, _, _, v in result.rows()}
        diff = max(error(ef.schedule(prof, n, interval="range"), ref[n]) for n in ref)
        rows.append((name, prof.meta["evaluations"], diff, [fd[c] for c in CELLS]))
        print(name, rows[-1][1:3], rows[-1][3], flush=True)
    return rows, time.time() - t0


def write(rows, seconds, out_dir, quick):
    head = harness.header("Does a 3% schedule sample as well as a precise one?", "schedule_tolerance.py", quick,
                          "The digits model's rescaled schedule from a reference profile (128 x 1024, both control "
                          "variates) and from the default adaptive run at 3% and at 1% (`ef.profile(net, data, "
                          "tolerance=...)`, one run per profile seed). `difference`: the largest relative difference "
                          "of the 8- and 16-step schedules' inner sigmas from the reference's. Frechet distance of "
                          "the samples (`ef.compare`, digits classifier features, the same noise for every profile), "
                          "mean ± std over the sampling seeds.", seconds=seconds)
    head += ["| profile | evaluations | difference | " + " | ".join(f"{s} {b}" for s, b in CELLS) + " |",
             "| --- " * (len(CELLS) + 3) + "|"]
    body = [f"| {n} | {e} | {100 * d:.2f}% | " + " | ".join(f"{m:.2f} ± {sd:.2f}" for m, sd in fd) + " |"
            for n, e, d, fd in rows]
    text = "\n".join(head + body) + "\n" + harness.findings(out_dir, "schedule_tolerance", quick)
    harness.save(out_dir, "schedule_tolerance", quick, text)
    return text


if __name__ == "__main__":
    harness.main(__doc__, run, write)
