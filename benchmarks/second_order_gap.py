"""Where our default loses on the digits16 transformer (Heun at 15 evaluations, DPM++(2M) at 8 and 16): is it the
interval or the spacing? Rescaled spacing on intervals around the rule's, rescaled spacing flattened toward
equal steps in log sigma (rate ``(e / s)^gamma``) on the rule's interval, and the spacings of EDM, of equal steps
in log sigma and of the best peers on the rule's interval (``ef.compare(same_ends=True)``); the same noise in
every cell.

    python benchmarks/second_order_gap.py [--samples 500] [--seeds 2]

Writes benchmarks/results/second_order_gap.md (the table, the command, the machine, the time).
"""
import argparse
import dataclasses
import os
import platform
import sys
import time

import torch

import entropic_fast as ef
from entropic_fast import digits16, kinds, samplers, schedules, times

CELLS = (("dpmpp_2m", 8), ("dpmpp_2m", 16), ("heun", 8))  # (sampler, steps): 8, 16 and 15 evaluations
MOVES = ((1, 1), (3, 1), (1 / 3, 1), (1, None), (3, None), (1 / 3, None), (1, 0.5))  # stop x, start x (None: 80)
GAMMAS = (0.6, 0.3)
SPACINGS = ("edm", "exponential", "ays-sd15", "sgm_uniform")  # on the rule's interval


def cell(net, ref, feats, prof, sampler, steps, interval, args):
    p = prof.with_meta(tuned={schedules.tuned_key(sampler, steps, "rescaled"): {"interval": list(interval)}})
    r = ef.compare(net, ref, profile=p, kinds=["rescaled"], steps=[samplers.evaluations(sampler, steps)],
                   samplers=[sampler], samples=args.samples, seeds=args.seeds, features=feats, progress=False,
                   batch_size=1024)
    return r.rows()[0][-1]["rescaled"]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=500)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "second_order_gap.md"))
    args = p.parse_args()
    t0 = time.time()
    net, ref, feats = digits16.denoiser(), digits16.load("all")[0], digits16.features()
    prof = ef.profile(net, digits16.load("train")[0], samples=256, batch_size=1024, spectral=True, control=None,
                      progress=False)  # as benchmarks/compare_digits.py profiles it
    lines = ["| sampler | evaluations | variant | interval | Frechet |", "| --- | --- | --- | --- | --- |"]
    base = kinds._BY_NAME["rescaled"]
    for sampler, steps in CELLS:
        lo, hi = schedules.ends(prof, steps, "rescaled", sampler=sampler)
        evals = samplers.evaluations(sampler, steps)
        for fs, fh in MOVES:
            ab = (lo * fs, 80.0 if fh is None else min(hi * fh, 80.0))
            m, s = cell(net, ref, feats, prof, sampler, steps, ab, args)
            name = "the rule" if (fs, fh) == (1, 1) else f"stop x{fs:.3g}, start {'80' if fh is None else f'x{fh}'}"
            lines.append(f"| {sampler} | {evals} | {name} | [{ab[0]:.4g}, {ab[1]:.4g}] | {m:.2f} ± {s:.2f} |")
        for g in GAMMAS:  # the rate flattened: gamma 0 would be equal steps in log sigma
            rate = (lambda g_: lambda pr, smooth=None, a=None, b=None: times.rescaled_rate(pr, smooth) ** g_)(g)
            kinds._BY_NAME["rescaled"] = dataclasses.replace(base, rate=rate)
            try:
                m, s = cell(net, ref, feats, prof, sampler, steps, (lo, hi), args)
            finally:
                kinds._BY_NAME["rescaled"] = base
            lines.append(f"| {sampler} | {evals} | spacing (e/s)^{g} | [{lo:.4g}, {hi:.4g}] | {m:.2f} ± {s:.2f} |")
        same = ef.compare(net, ref, profile=prof, kinds=SPACINGS, steps=[evals], samplers=[sampler],
                          samples=args.samples, seeds=args.seeds, features=feats, progress=False, batch_size=1024,
                          same_ends=True).rows()[0][-1]
        for k in SPACINGS:
            lines.append(f"| {sampler} | {evals} | {k} spacing | [{lo:.4g}, {hi:.4g}] | {same[k][0]:.2f} ± "
                         f"{same[k][1]:.2f} |")
    ode = ef.compare(net, ref, profile=None, kinds=["edm"], steps=[127], samplers=["heun"], samples=args.samples,
                     seeds=args.seeds, features=feats, progress=False, batch_size=1024).rows()[0][-1]["edm"]
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")),
               platform.processor())
    text = ["# The second-order samplers' gap on digits16: interval or spacing?", "",
            f"Command: `python benchmarks/second_order_gap.py {' '.join(sys.argv[1:])}`  ",
            f"Machine: {cpu}, {os.cpu_count()} cores; no GPU; torch {torch.__version__}  ",
            f"Wall time: {time.time() - t0:.0f} s", "",
            f"Frechet distance (digits16 features) of {args.samples} samples x {args.seeds} seeds, mean ± std; "
            "rescaled spacing unless said. The best other kinds on the model's range, from compare_digits16.md: "
            "DPM++(2M) 8 evaluations ays-sd15 26.33 ± 0.47, 16 edm 26.36 ± 0.64; Heun 15 sgm_uniform 25.79 ± 0.81. "
            f"The exact ODE (Heun at 64 steps, 127 evaluations, EDM spacing on the model's range, the same seeds): "
            f"{ode[0]:.2f} ± {ode[1]:.2f}.",
            "", *lines, ""]
    ef.files.write_text(args.out, "\n".join(text))
    print("\n".join(text))


if __name__ == "__main__":
    main()
