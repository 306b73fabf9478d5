"""Random interrupts against checkpoints (issue 39's audit, re-run): SIGALRM at a random instant of a profile run,
its handler raising KeyboardInterrupt (a user's own handler: not held back like SIGINT), then a resume; every
resumed profile must equal the uninterrupted one bit for bit, and no checkpoint may be refused.

    python benchmarks/signal_audit.py [--trials 250] [--out benchmarks/results/signal_audit.md]

Fixed-plan runs (``samples=``) and adaptive ones (``tolerance=``), with controls and without, checkpointing every
batch. Writes the counts (interrupted, resumed equal, refused, other) with the command and the machine.
"""
import argparse
import os
import platform
import signal
import sys
import tempfile
import time

import numpy as np
import torch

import entropic_fast as ef


def denoiser(x, sigma):
    return x / (1 + sigma[:, None] ** 2)


CASES = {"fixed": dict(samples=256), "adaptive": dict(tolerance=0.05, max_evaluations=20_000)}


def run(case, ck=None):
    data = torch.randn(512, 8, generator=torch.Generator().manual_seed(0))
    kw = dict(CASES[case], batch_size=64, progress=False, control=None if case == "fixed" else "both")
    return ef.profile(denoiser, data, ef.sigma_grid(12), checkpoint=ck, checkpoint_every=1, **kw)


def _alarm(signum, frame):
    raise KeyboardInterrupt


def trial(case, whole, rng, folder):
    """``"clean"`` (the alarm came after the run), ``"equal"``, ``"differs"``, ``"refused: ..."``."""
    ck = os.path.join(folder, f"ck-{case}.npz")
    if os.path.exists(ck):
        os.remove(ck)
    signal.setitimer(signal.ITIMER_REAL, float(rng.uniform(0.001, whole.meta["_seconds"])))
    try:
        run(case, ck)
        signal.setitimer(signal.ITIMER_REAL, 0)
        return "clean"
    except (KeyboardInterrupt, ef.Interrupted):
        signal.setitimer(signal.ITIMER_REAL, 0)
    except Exception as e:  # noqa: BLE001  the interrupt turned into another error: a finding
        signal.setitimer(signal.ITIMER_REAL, 0)
        return f"other error: {type(e).__name__}: {str(e)[:100]}"
    try:
        again = run(case, ck)
    except ef.InputError as e:
        return f"refused: {str(e)[:120]}"
    same = np.array_equal(again.sum, whole.sum) and np.array_equal(again.count, whole.count)
    return "equal" if same else "differs"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=250, help="trials per case")
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "signal_audit.md"))
    args = p.parse_args()
    signal.signal(signal.SIGALRM, _alarm)
    rng, t0, lines = np.random.default_rng(0), time.time(), []
    with tempfile.TemporaryDirectory() as folder:
        for case in CASES:
            whole = run(case)
            took = []
            for k in range(3):  # how long a checkpointed run takes, warmed up
                start = time.perf_counter()
                run(case, os.path.join(folder, f"timed-{case}-{k}.npz"))
                took.append(time.perf_counter() - start)
            whole.meta["_seconds"] = min(took)
            counts = {}
            for _ in range(args.trials):
                r = trial(case, whole, rng, folder)
                counts[r] = counts.get(r, 0) + 1
            lines.append(f"| {case} | {args.trials} | {counts.get('equal', 0)} | {counts.get('clean', 0)} | "
                         f"{counts.get('differs', 0)} | {sum(v for k, v in counts.items() if k.startswith('refused'))} |")
            others = sum(v for k, v in counts.items() if k.startswith("other"))
            lines[-1] += f" {others} |"
            for k in counts:
                if k.startswith(("refused", "other")):
                    lines.append(f"|  | {k} ({counts[k]}) | | | | | |")
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")),
               platform.processor())
    text = ["# Random interrupts against checkpoints", "", f"Command: `python benchmarks/signal_audit.py "
            f"{' '.join(sys.argv[1:])}`  ", f"Machine: {cpu}, {os.cpu_count()} cores; torch {torch.__version__}  ",
            f"Wall time: {time.time() - t0:.0f} s", "",
            "SIGALRM at a uniform random instant of the run, its handler raising KeyboardInterrupt; then the same "
            "call resumes from the checkpoint (written every batch).", "",
            "| run | trials | resumed, equal bit for bit | alarm after the end | resumed, differs | resume refused | "
            "another error than the interrupt |", "| --- | --- | --- | --- | --- | --- | --- |", *lines, ""]
    ef.files.write_text(args.out, "\n".join(text))
    print("\n".join(text))


if __name__ == "__main__":
    main()
