"""Core benchmarks, measured side by side in one run (ratios; the CPU here is shared and noisy).

1. C++ integrate + invert (entropic_fast.curves) against the numpy/scipy reference of the tests,
   for 2,000 curves x 128 points x 32 steps.
2. The Monte-Carlo loop (entropic_fast.profile) against bare calls of the same denoiser on the
   same inputs: a small conv net on the CPU.

Usage: python benchmarks/bench_core.py [--out benchmarks/results/core_cpu.md]
"""
import argparse
import os
import platform
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
import reference_curves  # noqa: E402

import entropic_fast as ef  # noqa: E402
from entropic_fast import curves  # noqa: E402


def timeit(fn, repeat):
    """Median and min wall time of ``repeat`` calls."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), min(times)


def bench_curves(n_curves=2000, n_points=128, steps=32, repeat=5):
    rng = np.random.default_rng(0)
    u = np.log(ef.sigma_grid(n_points))
    y = np.exp(-0.5 * (u[None, :] - rng.uniform(-4, 2, (n_curves, 1))) ** 2) * rng.uniform(0.5, 2, (n_curves, 1))
    frac = 1.0 - np.arange(steps) / (steps - 1)

    def fast():
        total = curves.cumulative(u, y)[:, -1:]
        return curves.invert(u, y, total * frac)

    def reference():
        total = reference_curves.cumulative(u, y)[:, -1:]
        return reference_curves.invert(u, y, total * frac)

    got, want = fast(), reference()
    err = float(np.max(np.abs(got - want)))
    t_fast = timeit(fast, repeat)
    t_ref = timeit(reference, 1)
    return {"fast": t_fast, "ref": t_ref, "max_abs_diff_logsigma": err}


class SmallUNetish(torch.nn.Module):
    """A small conv denoiser (EDM-style skip) on 1x16x16 images, for timing only."""

    def __init__(self, width=32):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(2, width, 3, padding=1), torch.nn.SiLU(),
            torch.nn.Conv2d(width, width, 3, padding=1), torch.nn.SiLU(),
            torch.nn.Conv2d(width, 1, 3, padding=1))

    def forward(self, x, sigma):
        s = sigma.view(-1, 1, 1, 1)
        c_in = 1 / (1 + s**2).sqrt()
        h = torch.cat([x * c_in, s.log().expand_as(x) / 4], 1)
        return x / (1 + s**2) + s / (1 + s**2).sqrt() * self.net(h)


def bench_loop(n_sigmas=32, samples=256, batch_size=256, repeat=5):
    torch.manual_seed(0)
    net = SmallUNetish().eval()
    data = torch.randn(2000, 1, 16, 16)
    grid = ef.sigma_grid(n_sigmas)
    run = lambda: ef.profile(net, data, grid, samples=samples, batch_size=batch_size, progress=False)  # noqa: E731
    # the same inputs, prepared beforehand: only the network calls are timed
    n = n_sigmas * samples
    x0 = data[torch.randint(len(data), (n,))]
    sig = torch.as_tensor(grid, dtype=torch.float32).repeat_interleave(samples)
    xs = x0 + sig.view(-1, 1, 1, 1) * torch.randn_like(x0)

    def bare():
        with torch.no_grad():
            for i in range(0, n, batch_size):
                net(xs[i:i + batch_size], sig[i:i + batch_size])

    run(), bare()  # warm up
    t_loop, t_bare = [], []
    for _ in range(repeat):  # interleaved so that machine noise hits both alike
        t_loop.append(timeit(run, 1)[0])
        t_bare.append(timeit(bare, 1)[0])
    return {"loop": statistics.median(t_loop), "bare": statistics.median(t_bare), "evals": n}


def cpu_model():
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "core_cpu.md"))
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    c = bench_curves()
    m = bench_loop()
    machine = f"{cpu_model()}, {os.cpu_count()} cores; " \
              f"python {platform.python_version()}, torch {torch.__version__}, numpy {np.__version__}"
    lines = [
        "# Core benchmarks (CPU)",
        "",
        "Command: `python benchmarks/bench_core.py` (also `make bench`)  ",
        f"Machine: {machine}  ",
        f"Date: {time.strftime('%Y-%m-%d')}",
        "",
        "## Integrate + invert: 2,000 curves x 128 points x 32 steps",
        "",
        "| implementation | median s | min s | speed-up |",
        "| --- | --- | --- | --- |",
        f"| C++ `entropic_fast.curves` | {c['fast'][0]:.4f} | {c['fast'][1]:.4f} | {c['ref'][0] / c['fast'][0]:.0f}x |",
        f"| numpy/scipy reference (PchipInterpolator + brentq) | {c['ref'][0]:.3f} | {c['ref'][1]:.3f} | 1x |",
        "",
        f"Largest difference of the inverted points (log sigma): {c['max_abs_diff_logsigma']:.2e}",
        "",
        f"## Monte-Carlo loop overhead: small conv net, 1x16x16, {m['evals']} evaluations, batch 256",
        "",
        "| what | median s | ratio |",
        "| --- | --- | --- |",
        f"| `ef.profile` (draws, noise, network, accumulation) | {m['loop']:.3f} | {m['loop'] / m['bare']:.2f} |",
        f"| bare network calls on prepared inputs | {m['bare']:.3f} | 1.00 |",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
