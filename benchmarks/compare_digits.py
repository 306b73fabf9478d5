"""The schedule benchmark on a shipped model: every kind, four samplers, 4/8/16 network evaluations; ours choose
their interval from the profile, the peers run on the model's range (as in clients); then the "same ends" control
(the peers on our interval), which separates what the interval gives from what the spacing gives.

    python benchmarks/compare_digits.py [--model digits|digits16] [--samples 500] [--seeds 2] [--steps 4 8 16]
                                        [--device cuda] [--out benchmarks/results]

``digits``: the 8x8 digits UNet; ``digits16``: the 16x16 digits transformer (``entropic_fast.digits16``, a model
the interval rule was not made on). Profiles the model (256 samples per sigma, spectral, the plain mean), runs
``ef.compare`` against all its data (classifier features) and writes ``compare_<model>.md`` (the table, the verdict
per row against the best peer, the control, the command, the machine and the time), ``compare_<model>.json`` and
``compare_<model>.png``.
"""
import argparse
import json
import os
import platform
import sys
import time

import torch

import entropic_fast as ef
from entropic_fast import digits, digits16, kinds, samplers

OURS = kinds.OUR_KINDS
CONTROL = ("edm", "normal", "simple", "kl_optimal", "ays-sdxl", "ays-svd")  # the peers that won rows before
SAMPLERS = tuple(t.name for t in samplers.TABLE)  # every sampler the table knows


def machine(device):
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    gpu = torch.cuda.get_device_name() if device.type == "cuda" else "no GPU"
    return f"{cpu}, {os.cpu_count()} cores; {gpu}; torch {torch.__version__}"


def model(name):
    """``(denoiser, training rows, all rows, features or None)`` of a shipped model."""
    if name == "digits":
        return digits.denoiser(), digits.load("train")[0], digits.load("all")[0], None
    return digits16.denoiser(), digits16.load("train")[0], digits16.load("all")[0], digits16.features()


def verdict(ours, other, floor):
    """win / tie / loss of our best cell against the best other: a tie is a difference within the larger of the
    two spreads over seeds, or both within two spreads of the matched floor."""
    (m1, s1), (m2, s2) = ours, other
    at_floor = floor[0] is not None and max(m1, m2) <= floor[0] + 2 * floor[1]
    if m1 < m2 - max(s1, s2):
        return "win"
    return "tie" if abs(m1 - m2) <= max(s1, s2) or at_floor else "loss"


def verdicts(result):
    """Per row: our best kind against the best other kind (peers and classic), and the count of each verdict."""
    lines = ["| sampler | evaluations | best of ours | best other | other / ours | verdict |",
             "| --- | --- | --- | --- | --- | --- |"]
    counts = {"win": 0, "tie": 0, "loss": 0}
    floor = (result.reference.floor, result.reference.floor_std or 0.0)
    for row in result.rows():
        sampler, _, _, evals, cells = row
        if result.same(row):
            continue
        ours = min((k for k in cells if k in OURS), key=lambda k: cells[k][0])
        other = min((k for k in cells if k not in OURS), key=lambda k: cells[k][0])
        v = verdict(cells[ours], cells[other], floor)
        counts[v] += 1
        lines.append(f"| {sampler} | {evals} | {ours} {cells[ours][0]:.2f} ± {cells[ours][1]:.2f} | {other} "
                     f"{cells[other][0]:.2f} ± {cells[other][1]:.2f} | {cells[other][0] / cells[ours][0]:.2f} | {v} |")
    return lines, counts


def control_text(control):
    """The same-ends control's section: the table and rescaled against the best other on the same ends."""
    cl, cc = verdicts(control)
    return ["## Control: the same ends", "",
            "The peers and EDM on the interval rescaled chooses for the row's sampler and budget: what is left "
            "between them is the spacing's share.", "", control.markdown(),
            f"Rescaled against the best other on the same ends: {cc['win']} wins, {cc['tie']} ties, "
            f"{cc['loss']} losses.", "", *cl, ""]


def run(args, net, reference, features, prof, kinds_, same_ends):
    return ef.compare(net, reference, profile=prof, kinds=kinds_, steps=args.control_steps if same_ends else args.steps,
                      samplers=SAMPLERS,
                      samples=args.samples, seeds=args.seeds, batch_size=1024, device=torch.device(args.device),
                      features=features, progress=False, same_ends=same_ends)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="digits", choices=("digits", "digits16"))
    p.add_argument("--samples", type=int, default=500, help="samples per cell and seed")
    p.add_argument("--seeds", type=int, default=2, help="seeds per cell")
    p.add_argument("--steps", type=int, nargs="+", default=[4, 8, 16], help="network evaluation budgets")
    p.add_argument("--control-steps", type=int, nargs="+", default=[4, 8], help="budgets of the same-ends control")
    p.add_argument("--kinds", nargs="+", default=None, help="the kinds (default: every kind)")
    p.add_argument("--no-control", action="store_true", help="leave out the same-ends control")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"), help="output folder")
    args = p.parse_args()
    device = torch.device(args.device)
    t0 = time.time()
    net, train, reference, features = model(args.model)
    net = net.to(device)
    prof = ef.profile(net, train.to(device), samples=256, batch_size=1024, spectral=True, control=None,
                      progress=False)
    every = args.kinds or [k.name for k in kinds.TABLE if k.alias is None]
    result = run(args, net, reference, features, prof, every, False)
    control = None if args.no_control else run(args, net, reference, features, prof, [*CONTROL, "rescaled"], True)
    seconds = time.time() - t0
    lines, counts = verdicts(result)
    evaluations = result.meta["evaluations"] + (control.meta["evaluations"] if control else 0)
    name = f"compare_{args.model}"
    text = [f"# The schedule benchmark on the {args.model} model ({len(every)} kinds)", "",
            f"Command: `python benchmarks/compare_digits.py {' '.join(sys.argv[1:])}`  ",
            f"Machine: {machine(device)}  ", f"Wall time: {seconds:.0f} s (profile, {evaluations:,} network "
            "evaluations)", "",
            f"Ours ({', '.join(OURS)}) choose their interval from the profile for each sampler and budget "
            "(`entropic_fast.interval`); the classic kinds and the peers run on the model's range, as clients "
            "give it to them.", "", result.markdown(),
            f"Our best kind against the best other kind, per row: {counts['win']} wins, {counts['tie']} ties (within "
            f"a spread over seeds, or both at the matched floor), {counts['loss']} losses.", "", *lines, "",
            *(control_text(control) if control else []), f"![compare]({name}.png)", ""]
    os.makedirs(args.out, exist_ok=True)
    ef.files.write_text(os.path.join(args.out, f"{name}.md"), "\n".join(text))
    ef.files.write_text(os.path.join(args.out, f"{name}.json"),
                        json.dumps({**result.to_dict(), "same_ends": control.to_dict() if control else None,
                                    "command": sys.argv[1:],
                                    "seconds": seconds}))
    result.figure(os.path.join(args.out, f"{name}.png"))
    print("\n".join(text))


if __name__ == "__main__":
    main()
