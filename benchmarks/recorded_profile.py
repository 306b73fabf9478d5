"""The profile recorded while training the digits model, against a sampled profile of its final EMA weights.

    python scripts/train_digits.py --out /tmp/rt/digits_edm.pt      # records digits_edm_recorded.{npz,json}
    python benchmarks/recorded_profile.py /tmp/rt/digits_edm.pt [--out benchmarks/results]

Compares the recorded profile (training weights, older steps forgotten) with one sampled from the EMA weights
(1024 per sigma on the same grid): the error curves, the 8/16/32-step rescaled schedules (largest relative sigma
difference), the Frechet distance of DDIM samples at 8 and 16 steps with each (``ef.compare``, 3 seeds), how the
16-step schedule drifted over training (a figure), and the adaptive run that starts from the recorded profile
against the ones that start from a pilot (evaluations and wall time to +-1%).
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch

import entropic_fast as ef
from entropic_fast import digits
from entropic_fast.checks import pyplot


def load(weights):
    rec = json.load(open(os.path.splitext(weights)[0] + ".json"))
    net = digits.EDMDenoiser(rec["sigma_data"], rec["channels"])
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return net.eval(), rec


def drift_figure(snapshots, path):
    """Each sigma of the 16-step rescaled schedule of the recorded profile against the training step."""
    plt = pyplot()
    steps = [s["step"] for s in snapshots if s["sigmas"]]
    sig = np.array([s["sigmas"][:-1] for s in snapshots if s["sigmas"]])
    fig, ax = plt.subplots(figsize=(6.4, 3.8), constrained_layout=True)
    for i in range(1, sig.shape[1] - 1):
        ax.plot(steps, sig[:, i], color="C0", linewidth=1)
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel("sigma")
    ax.set_title("16-step rescaled schedule of the recorded profile, as training goes on")
    fig.savefig(path, dpi=120)
    plt.close(fig)


def adaptive_cost(net, data, prior):
    """``{start: (evaluations, seconds, band)}`` of adaptive runs to +-1%: from the default pilot (32 per sigma), a
    pilot of 128 per sigma, and the same 128 per sigma shared out as the recorded prior's band says."""
    out = {}
    for name, kw in (("pilot, 32 per sigma (the default)", {}), ("pilot, 128 per sigma", {"pilot": 128}),
                     ("recorded prior, 128 per sigma shared out", {"pilot": 128, "prior": prior})):
        t0 = time.time()
        p = ef.profile(net, data, tolerance=0.01, progress=False, **kw)
        out[name] = (p.meta["evaluations"], time.time() - t0, p.meta["adaptive"]["rounds"][-1]["band"])
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("weights", help="the EMA weights train_digits.py wrote (its _recorded files beside them)")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"), help="output folder")
    args = ap.parse_args()
    t0 = time.time()
    torch.set_num_threads(os.cpu_count() or 1)
    net, record = load(args.weights)
    base = os.path.splitext(args.weights)[0]
    recorded = ef.Profile.load(base + "_recorded.npz")
    drift = json.load(open(base + "_recorded.json"))
    data = digits.load("train")[0]
    sampled = ef.profile(net, data, recorded.sigmas, samples=1024, progress=False)
    rel = recorded.mse / sampled.mse - 1
    z = (recorded.mse - sampled.mse) / np.hypot(recorded.stderr, sampled.stderr)
    lines = [f"# The profile recorded while training, against the final EMA weights' (issue 30)", "",
             f"Command: `{record['command']}` (recorder on, half-life {drift['half_life']:.0f} steps), then "
             f"`python benchmarks/recorded_profile.py {' '.join(sys.argv[1:])}`  ",
             f"Machine: {open('/proc/cpuinfo').read().split('model name')[1].split(':')[1].splitlines()[0].strip()}, "
             f"{os.cpu_count()} cores; training {record['seconds']} s; this script {{seconds}} s", "",
             f"Weights: sha256 {record['sha256'][:16]}... ({'the shipped ones' if record['sha256'] == digits.record('digits_edm.pt')['sha256'] else 'not the shipped ones'}); "
             f"recorded over {recorded.meta['recorded']['steps']} steps, "
             f"{recorded.meta['recorded']['effective_samples']:.0f} effective samples (Kish) after forgetting, "
             f"{recorded.meta['recorded']['outside_range']} outside [0.002, 80].", "",
             "## The error curves", "",
             f"Recorded over sampled, per sigma (64 knots; sampled: 1024 per sigma, the default control variates): "
             f"median {np.median(rel):+.1%}, from {rel.min():+.1%} to {rel.max():+.1%}; "
             f"z-scores (difference over the two standard errors combined) median {np.median(z):+.2f}, "
             f"|z| > 3 at {int((np.abs(z) > 3).sum())} of {z.size} sigmas; recorded standard error median "
             f"{np.median(recorded.stderr / recorded.mse):.1%} of the curve, sampled {np.median(sampled.stderr / sampled.mse):.1%}.",
             "", "| steps | largest relative sigma difference, rescaled | 95% band of the recorded (widest) |",
             "| --- | --- | --- |"]
    for k in (8, 16, 32):
        a, b = ef.schedule(recorded, k, "rescaled", interval="range")[:-1], \
            ef.schedule(sampled, k, "rescaled", interval="range")[:-1]
        lo, hi = ef.schedule_band(recorded, k, "rescaled", interval="range")
        lines.append(f"| {k} | {np.max(np.abs(a / b - 1)):.2%} | +-{np.max((hi / lo)[:-1] ** 0.5 - 1):.2%} |")
    lines += ["", "## Sample quality with each", ""]
    fd = {}
    for name, prof in (("recorded", recorded), ("sampled", sampled)):
        r = ef.compare(net, digits.load("all")[0], profile=prof, kinds=["rescaled"], steps=[8, 16], samplers=["ddim"],
                       samples=700, seeds=3, progress=False)
        fd[name] = {c.steps: r.distances(c) for c in r.cells}
    lines += ["| DDIM steps | Frechet, recorded profile's schedule | Frechet, sampled profile's schedule |",
              "| --- | --- | --- |"]
    for k in (8, 16):
        lines.append(f"| {k} | {np.mean(fd['recorded'][k]):.2f} ± {np.std(fd['recorded'][k]):.2f} | "
                     f"{np.mean(fd['sampled'][k]):.2f} ± {np.std(fd['sampled'][k]):.2f} |")
    cost = adaptive_cost(net, data, recorded)
    lines += ["", "## An adaptive run from the recorded profile", "",
              "| start | evaluations to +-1% | wall time | band reached |", "| --- | --- | --- | --- |"]
    lines += [f"| {k} | {e:,} | {s:.0f} s | +-{b:.2%} |" for k, (e, s, b) in cost.items()]
    drift_figure(drift["snapshots"], os.path.join(args.out, "recorded_drift.png"))
    first, last = drift["snapshots"][0], drift["snapshots"][-1]
    move = [np.max(np.abs(np.array(s["sigmas"][1:-2]) / np.array(last["sigmas"][1:-2]) - 1))
            for s in drift["snapshots"] if s["sigmas"]]
    lines += ["", "## How the schedule drifted", "",
              f"The 16-step rescaled schedule of the recorded profile every 250 steps: its largest relative difference "
              f"from the final one was {move[0]:.0%} at step {first['step']}, {move[len(move) // 2]:.1%} halfway, "
              f"{move[-2]:.1%} one snapshot before the end.", "", "![drift](recorded_drift.png)", ""]
    text = "\n".join(lines).replace("{seconds}", f"{time.time() - t0:.0f}")
    ef.files.write_text(os.path.join(args.out, "recorded_profile.md"), text)
    print(text)


if __name__ == "__main__":
    main()
