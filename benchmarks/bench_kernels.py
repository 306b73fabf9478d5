"""Kernel benchmark, side by side in one run.

On a CUDA device: each Triton kernel against its torch twin, eager and ``torch.compile``; achieved
bandwidth and FLOP rate as fractions of the device's ceilings, measured in the same run (a
device-to-device copy; a large float32 matrix product). On the CPU: the twins (the CPU path)
against the unfused naive ops they replace; Triton itself only runs interpreted there.

Usage: python benchmarks/bench_kernels.py [--out FILE] [--quick]
"""
import argparse
import os
import statistics
import time

import torch
from bench_core import cpu_model

from entropic_fast.kernels import reference

CUDA = torch.cuda.is_available()
DEV = torch.device("cuda" if CUDA else "cpu")


def sync():
    if CUDA:
        torch.cuda.synchronize()


def bench(fn, repeat=10):
    """Median seconds per call after a warm-up."""
    fn()
    sync()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def ceilings():
    """Measured copy bandwidth (bytes/s, read + write) and float32 matmul rate (FLOP/s)."""
    n = (1 << 28) if CUDA else (1 << 24)
    a = torch.empty(n, dtype=torch.float32, device=DEV).normal_()
    b = torch.empty_like(a)
    bw = 2 * a.numel() * 4 / bench(lambda: b.copy_(a))
    m = 8192 if CUDA else 1024
    x = torch.randn(m, m, device=DEV)
    torch.backends.cuda.matmul.allow_tf32 = False
    flops = 2 * m**3 / bench(lambda: x @ x, repeat=5)
    return bw, flops


# ---------------------------------------------------------------- naive (unfused) versions, CPU baseline

def naive_perturb(x0, sigma, seed, row_ids):
    """Noise from a stored tensor drawn by torch's generator, then a separate multiply-add."""
    n = torch.randn(x0.shape, generator=torch.Generator(x0.device).manual_seed(seed), device=x0.device)
    return x0 + sigma.view(-1, *([1] * (x0.ndim - 1))) * n


def naive_accumulate(d, x0, sigma_index, acc, spectral=None):
    """One masked reduction per sigma (what a loop over noise levels does)."""
    err = (d.double() - x0.double()).square().flatten(1).sum(1)
    for i in range(acc.shape[1]):
        m = sigma_index == i
        acc[0, i] += err[m].sum()
        acc[1, i] += err[m].square().sum()
        acc[2, i] += m.sum()
    if spectral is not None:
        p = torch.fft.fft2((d - x0).double(), norm="ortho").abs().square()
        for i in range(spectral.shape[0]):
            spectral[i] += p[sigma_index == i].sum(0)


def naive_ideal(means, var, logw, x0, sigma, seed, row_ids, sigma_index, acc):
    """The full (rows x points) softmax materialised at once, then the error."""
    x = naive_perturb(x0, sigma, seed, row_ids)
    s2 = sigma.view(-1, 1) ** 2
    t = var[None, :] + s2
    logit = logw[None, :] - torch.cdist(x, means).square() / (2 * t) - 0.5 * x.shape[1] * t.log()
    p = logit.softmax(1)
    den = (p * s2 / t) @ means + (p * var[None, :] / t).sum(1, keepdim=True) * x
    naive_accumulate(den, x0, sigma_index, acc)


# ---------------------------------------------------------------- cases

def cases(quick):
    rows, side, C = (256, 32, 3) if quick or not CUDA else (1024, 64, 3)
    K, dim = (2048, 256) if quick or not CUDA else (16384, 1024)
    n_sig = 32
    x0 = torch.randn(rows, C, side, side, device=DEV)
    d = x0 + 0.1 * torch.randn_like(x0)
    sigma = torch.rand(rows, device=DEV) * 10
    rid = torch.arange(rows, device=DEV)
    idx = torch.randint(n_sig, (rows,), device=DEV)
    means = torch.randn(K, dim, device=DEV)
    var = torch.zeros(K, device=DEV)
    logw = torch.full((K,), -float(torch.log(torch.tensor(float(K)))), device=DEV)
    q = means[torch.randint(K, (rows,), device=DEV)]
    qs = torch.rand(rows, device=DEV) * 2
    acc = lambda: torch.zeros(4, n_sig, dtype=torch.float64, device=DEV)  # noqa: E731
    spec = lambda: torch.zeros(n_sig, C, side, side, dtype=torch.float64, device=DEV)  # noqa: E731
    el = x0.numel()
    hw = side * side
    dft_flops = rows * C * (2 * 2 * side * hw + 4 * 2 * side * hw)
    ideal_flops = 2 * 2 * rows * K * dim
    return [
        # name, launcher name, args factory, bytes, flops
        ("perturb", "perturb", lambda: (x0, sigma, 7, rid), 2 * el * 4, 0),
        ("accumulate_error", "accumulate_error", lambda: (d, x0, idx, acc()), 2 * el * 4, 0),
        ("accumulate_error+spectral", "accumulate_error", lambda: (d, x0, idx, acc(), spec()), 2 * el * 4,
         dft_flops),
        ("ideal_error (point set)", "ideal_error", lambda: (means, var, logw, q, qs, 7, rid, idx, acc()),
         (rows // 16) * K * dim * 4 * 2, ideal_flops),
    ], dict(rows=rows, image=(C, side, side), points=K, dim=dim)


NAIVE = {"perturb": naive_perturb, "accumulate_error": naive_accumulate, "ideal_error": naive_ideal}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None)
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    args = ap.parse_args()
    name = torch.cuda.get_device_name() if CUDA else f"{cpu_model()}, {os.cpu_count()} cores"
    out = args.out or os.path.join(os.path.dirname(__file__), "results",
                                   "kernels_gpu.md" if CUDA else "kernels_cpu.md")
    bw, flops = ceilings()
    table, sizes = cases(args.quick)
    if CUDA:
        from entropic_fast.kernels import launchers
        tri = launchers("triton", DEV)
        variants = [("triton", lambda n: getattr(tri, n)), ("torch twin", lambda n: getattr(reference, n)),
                    ("torch twin, compiled", lambda n: torch.compile(getattr(reference, n)))]
    else:
        from entropic_fast.kernels import cpu
        variants = [("CPU path (C++ Philox)", lambda n: getattr(cpu, n)), ("torch twin", lambda n: getattr(reference, n)),
                    ("naive unfused", lambda n: NAIVE[n])]
    lines = [f"# Kernel benchmark ({'GPU' if CUDA else 'CPU'})", "",
             "Command: `python benchmarks/bench_kernels.py" + (" --quick" if args.quick else "") + "`  ",
             f"Device: {name}; torch {torch.__version__}  ",
             f"Sizes: {sizes}  ",
             f"Measured ceilings: copy {bw / 1e9:.1f} GB/s (read + write), float32 matmul {flops / 1e12:.2f} TFLOP/s  ",
             f"Date: {time.strftime('%Y-%m-%d')}", "",
             "| kernel | variant | median ms | vs first | GB/s | of copy bw | TFLOP/s | of matmul |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for label, launcher, make, nbytes, nflops in table:
        base = None
        for vname, get in variants:
            fn = get(launcher)
            t = bench(lambda: fn(*make()), repeat=5 if not CUDA else 20)
            base = base or t
            rate = f"{nflops / t / 1e12:.3f} | {nflops / t / flops:.1%}" if nflops else "- | -"
            lines.append(f"| {label} | {vname} | {t * 1e3:.3f} | {t / base:.2f}x | {nbytes / t / 1e9:.1f} | "
                         f"{nbytes / t / bw:.1%} | {rate} |")
        print(lines[-len(variants):], flush=True)
    text = "\n".join(lines) + "\n"
    print(text)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out + ".tmp", "w") as f:
        f.write(text)
    os.replace(out + ".tmp", out)


if __name__ == "__main__":
    main()
