"""The schedule benchmark on the shipped digits model: every kind, four samplers, 4/8/16 network evaluations.

    python benchmarks/compare_digits.py [--samples 700] [--seeds 3] [--device cuda] [--out benchmarks/results]

Profiles the model as the demo does (256 samples per sigma, spectral, the plain mean), then runs ``ef.compare``
against all 1797 digits (classifier features) and writes ``compare_digits.md`` (the table, which peers beat ours
where, the command, the machine and the time), ``compare_digits.json`` and ``compare_digits.png``.
"""
import argparse
import os
import platform
import sys
import time

import numpy as np
import torch

import entropic_fast as ef
from entropic_fast import digits, kinds

OURS = ("entropic", "rescaled", "las", "spectral", "gaussian-optimal")


def machine(device):
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    gpu = torch.cuda.get_device_name() if device.type == "cuda" else "no GPU"
    return f"{cpu}, {os.cpu_count()} cores; {gpu}; torch {torch.__version__}"


def verdicts(result):
    """Per row: the best kind, and the best of ours against the best peer or classic kind."""
    lines = ["| sampler | evaluations | best | best of ours | best other | other / ours |",
             "| --- | --- | --- | --- | --- | --- |"]
    wins = {"ours": 0, "other": 0}
    for sampler, _, _, evals, cells in result.rows():
        means = {k: v[0] for k, v in cells.items()}
        if len(set(means.values())) == 1:
            continue
        ours = min((k for k in means if k in OURS), key=means.get)
        other = min((k for k in means if k not in OURS), key=means.get)
        best = min(means, key=means.get)
        wins["ours" if best in OURS else "other"] += 1
        lines.append(f"| {sampler} | {evals} | {best} | {ours} {means[ours]:.2f} | {other} {means[other]:.2f} | "
                     f"{means[other] / means[ours]:.2f} |")
    return lines, wins


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=700, help="samples per cell and seed")
    p.add_argument("--seeds", type=int, default=3, help="seeds per cell")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"), help="output folder")
    args = p.parse_args()
    device = torch.device(args.device)
    t0 = time.time()
    net = digits.denoiser().to(device)
    data = digits.load("train")[0]
    prof = ef.profile(net, data.to(device), samples=256, batch_size=1024, spectral=True, control=None, progress=False)
    every = [k.name for k in kinds.TABLE if k.alias is None]
    result = ef.compare(net, digits.load("all")[0], profile=prof, kinds=every, steps=[4, 8, 16],
                        samplers=["ddim", "ddim-stochastic", "heun", "dpmpp_2m"], samples=args.samples,
                        seeds=args.seeds, batch_size=1024, device=device, progress=False)
    seconds = time.time() - t0
    lines, wins = verdicts(result)
    text = [f"# The schedule benchmark on the digits model ({len(every)} kinds)", "",
            f"Command: `python benchmarks/compare_digits.py {' '.join(sys.argv[1:])}`  ",
            f"Machine: {machine(device)}  ", f"Wall time: {seconds:.0f} s (profile and {result.meta['evaluations']:,} "
            "network evaluations)", "", result.markdown(),
            f"Which kind wins each row (ours: {', '.join(OURS)}): ours {wins['ours']}, the others {wins['other']}.",
            "", *lines, "", "![compare](compare_digits.png)", ""]
    os.makedirs(args.out, exist_ok=True)
    ef.files.write_text(os.path.join(args.out, "compare_digits.md"), "\n".join(text))
    ef.files.write_text(os.path.join(args.out, "compare_digits.json"), __import__("json").dumps(result.to_dict()))
    result.figure(os.path.join(args.out, "compare_digits.png"))
    print("\n".join(text))


if __name__ == "__main__":
    main()
