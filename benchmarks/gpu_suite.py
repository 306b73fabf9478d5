"""Everything only a GPU can show, in one command: kernels compiled for real, their speed, the estimator's overhead.

    python benchmarks/gpu_suite.py                  # on a CUDA machine; writes benchmarks/results/gpu_<device>.md
    python benchmarks/gpu_suite.py --smoke --out X  # tiny sizes on the CPU, kernels in Triton's interpreter (CI)

1. Correctness: every Triton launcher against its torch twin on the device, over odd shapes up to 3x512x512
   images and 16,384-dimensional mixtures (tolerances as in tests/test_kernels.py).
2. Kernel speed: each launcher against its twin and an unfused naive torch version, timed with CUDA
   events; the fraction of the device's memory bandwidth (measured by a large device copy in the same
   run, and the datasheet figure where the device is known) and of its FP32 peak for the ideal kernel.
3. Estimator overhead: ``ef.profile`` against bare network calls on prepared inputs, with a network of
   the digits architecture scaled to 4x64x64 inputs and about 300M parameters, random weights, run in
   bfloat16 autocast through ``adapters.edm``, at batch 64 and 256. Targets (issue 13): every kernel correct, ``accumulate_error`` >= 60% of the
   bandwidth, estimator overhead <= 2%.
"""
import argparse
import os
import platform
import sys
import time

if "--smoke" in sys.argv:  # before triton is imported
    os.environ.setdefault("TRITON_INTERPRET", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import entropic_fast as ef  # noqa: E402
from entropic_fast import digits  # noqa: E402
from entropic_fast.adapters import edm  # noqa: E402
from entropic_fast.kernels import ideal, noise, reference, stats  # noqa: E402

# datasheet figures (dense): memory bandwidth in bytes/s, FP32 and BF16 tensor FLOP/s
DATASHEET = {"H200": (4.8e12, 67e12, 989e12), "H100 PCIe": (2.0e12, 51e12, 756e12), "H100": (3.35e12, 67e12, 989e12),
             "A100": (2.0e12, 19.5e12, 312e12), "L40S": (0.864e12, 91.6e12, 362e12)}


def datasheet(name):
    return next((v for k, v in DATASHEET.items() if k in name), None)


def timed(fn, device, repeat):
    """Median seconds of ``repeat`` calls (CUDA events on a GPU, wall clock otherwise)."""
    fn()
    times = []
    for _ in range(repeat):
        if device.type == "cuda":
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            torch.cuda.synchronize()
            times.append(a.elapsed_time(b) / 1e3)
        else:
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
    return float(np.median(times))


def correctness(device, smoke):
    """Max relative error of every launcher against its twin, per shape."""
    g = torch.Generator(device="cpu").manual_seed(0)
    rows = []
    images = [(3, 1, 5, 7), (4, 2, 32, 31), (2, 1, 40, 33)] + ([] if smoke else [(5, 3, 17, 19), (2, 4, 64, 64),
                                                                                (2, 3, 512, 512)])
    for n, c, h, w in images:
        for dt in (torch.float32, torch.bfloat16):
            d = torch.randn(n, c, h, w, generator=g).to(device, dt)
            x0 = torch.randn(n, c, h, w, generator=g).to(device)
            idx = (torch.arange(n) % 2).to(device)
            got = [torch.zeros(4, 2, dtype=torch.float64, device=device), torch.zeros(2, c, h, w, dtype=torch.float64,
                                                                                  device=device)]
            want = [torch.zeros_like(t) for t in got]
            stats.accumulate_error(d, x0, idx, *got)
            reference.accumulate_error(d, x0, idx, *want)
            err = max(float(((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()) for a, b in zip(got, want))
            rows.append(("accumulate_error (+ spectrum)", f"{n}x{c}x{h}x{w} {str(dt)[6:]}", err, 1e-5))
            s = torch.rand(n, generator=g).to(device) * 80
            rid = torch.arange(n, device=device) + (1 << 33)
            a, b = noise.perturb(x0, s, 1234, rid), reference.perturb(x0, s, 1234, rid)
            rows.append(("perturb", f"{n}x{c}x{h}x{w}", float(((a - b).abs().max() / b.abs().max()).item()), 1e-5))
    for k, dim in [(5, 3), (70, 37), (33, 1024)] + ([] if smoke else [(257, 16384)]):
        means = torch.randn(k, dim, generator=g, dtype=torch.float64).to(device)
        var, logw = torch.full((k,), 0.1, dtype=torch.float64, device=device), torch.zeros(k, dtype=torch.float64,
                                                                                             device=device)
        n = 33
        x0 = means[torch.randint(k, (n,), generator=g).to(device)].float()
        s = (torch.rand(n, generator=g) * 3).to(device) + 0.01
        rid, idx = torch.arange(n, device=device), (torch.arange(n) % 3).to(device)
        got, want = (torch.zeros(4, 3, dtype=torch.float64, device=device) for _ in range(2))
        ideal.ideal_error(means, var, logw, x0, s, 99, rid, idx, got)
        reference.ideal_error(means, var, logw, x0, s, 99, rid, idx, want)
        rows.append(("ideal_error", f"K={k} dim={dim}", float(((got - want).abs().max() / want.abs().max()).item()), 1e-4))
    return rows


def copy_bandwidth(device, smoke):
    """Bytes per second of a large device-to-device copy (read + write)."""
    x = torch.empty(1 << (20 if smoke else 28), dtype=torch.float32, device=device)
    y = torch.empty_like(x)
    t = timed(lambda: y.copy_(x), device, 5)
    return 2 * x.numel() * 4 / t


def kernel_speed(device, smoke, peak_bw):
    rows = []
    n, shape = (4, (2, 8, 8)) if smoke else (256, (4, 64, 64))
    dim = int(np.prod(shape))
    d = torch.randn(n, *shape, device=device, dtype=torch.bfloat16)
    x0 = torch.randn(n, *shape, device=device)
    idx = torch.arange(n, device=device) % 128
    acc = torch.zeros(4, 128, dtype=torch.float64, device=device)
    moved = n * dim * (2 + 4)

    def naive():
        err = (d.float() - x0).square().flatten(1).sum(1).double()
        acc[0].index_add_(0, idx, err)
        acc[1].index_add_(0, idx, err * err)

    for name, fn in (("Triton", lambda: stats.accumulate_error(d, x0, idx, acc)),
                     ("torch twin", lambda: reference.accumulate_error(d, x0, idx, acc)), ("naive torch", naive)):
        t = timed(fn, device, 1 if smoke else 50)
        rows.append(("accumulate_error", f"{n}x{'x'.join(map(str, shape))} bf16", name, t, moved / t / peak_bw))
    s, rid = torch.rand(n, device=device) * 80, torch.arange(n, device=device)
    moved = n * dim * 8
    for name, fn in (("Triton", lambda: noise.perturb(x0, s, 7, rid)), ("torch twin", lambda: reference.perturb(x0, s, 7, rid)),
                     ("naive torch (randn)", lambda: x0 + s.view(-1, 1, 1, 1) * torch.randn_like(x0))):
        t = timed(fn, device, 1 if smoke else 50)
        rows.append(("perturb", f"{n}x{'x'.join(map(str, shape))} fp32", name, t, moved / t / peak_bw))
    spec = torch.zeros(128, *shape, dtype=torch.float64, device=device)
    for name, fn in (("Triton", lambda: stats.accumulate_error(d, x0, idx, acc, spec)),
                     ("torch twin", lambda: reference.accumulate_error(d, x0, idx, acc, spec))):
        t = timed(fn, device, 1 if smoke else 20)
        rows.append(("accumulate_error + spectrum", f"{n}x{'x'.join(map(str, shape))} bf16", name, t, None))
    return rows


def estimator_overhead(device, smoke):
    """``ef.profile`` against bare calls of a ~300M-parameter net on 4x64x64 inputs in bfloat16."""
    ch, shape, batches, samples, grid = (16, (4, 8, 8), (8,), 8, ef.sigma_grid(3)) if smoke else \
        (896, (4, 64, 64), (64, 256), 256, ef.sigma_grid(8))  # ch 896: about 300M parameters
    module = digits.EDMDenoiser(ch=ch, channels=shape[0]).to(device).eval()
    params = sum(p.numel() for p in module.parameters())
    net = edm.denoiser(module, dtype=torch.bfloat16)  # bfloat16 autocast, as EDM2 samples
    data = torch.randn(1024, *shape, device=device)
    rows = []
    for batch in batches:
        n = samples * grid.size
        x0 = data[torch.randint(len(data), (n,), device=device)]
        sig = torch.as_tensor(grid, dtype=torch.float32, device=device).repeat_interleave(samples)
        xs = x0 + sig.view(-1, 1, 1, 1) * torch.randn_like(x0)

        def bare():
            with torch.no_grad():
                for i in range(0, n, batch):
                    net(xs[i:i + batch], sig[i:i + batch])

        def run():
            ef.profile(net, data, grid, samples=samples, batch_size=batch, progress=False, device=device)

        t_bare, t_run = [], []
        bare(), run()
        for _ in range(1 if smoke else 3):  # interleaved
            t_run.append(timed(run, device, 1))
            t_bare.append(timed(bare, device, 1))
        rows.append((batch, n, float(np.median(t_run)), float(np.median(t_bare))))
    return params, rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU through Triton's interpreter (CI)")
    ap.add_argument("--out", default=None, help="markdown output (default benchmarks/results/gpu_<device>.md)")
    args = ap.parse_args()
    if args.smoke:
        device, name = torch.device("cpu"), "CPU smoke run (interpreter)"
    elif not torch.cuda.is_available():
        print("gpu_suite.py needs a CUDA device (or --smoke for a CPU dry run)", file=sys.stderr)
        return 2
    else:
        device, name = torch.device("cuda"), torch.cuda.get_device_name()
    t0 = time.time()
    correct = correctness(device, args.smoke)
    bw = copy_bandwidth(device, args.smoke)
    sheet = datasheet(name)
    speed = kernel_speed(device, args.smoke, bw)
    params, over = estimator_overhead(device, args.smoke)
    slug = "".join(c if c.isalnum() else "_" for c in name).strip("_").lower()
    out = args.out or os.path.join(os.path.dirname(__file__), "results", f"gpu_{slug}.md")
    lines = [f"# GPU suite: {name}", "", f"Command: `python benchmarks/gpu_suite.py{' --smoke' if args.smoke else ''}`  ",
             f"Machine: {name}; torch {torch.__version__}, python {platform.python_version()}; {time.strftime('%Y-%m-%d')}; "
             f"{time.time() - t0:.0f} s", "", "## Kernels against their torch twins", "",
             "| launcher | shape | max relative error | tolerance | ok |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {k} | {s} | {e:.2e} | {tol:g} | {'yes' if e <= tol else 'NO'} |" for k, s, e, tol in correct]
    bw_note = f"measured copy bandwidth {bw / 1e9:.0f} GB/s" + (f"; datasheet {sheet[0] / 1e9:.0f} GB/s" if sheet else "")
    lines += ["", f"## Kernel speed ({bw_note})", "", "| launcher | input | implementation | median ms | fraction of copy bandwidth |",
              "| --- | --- | --- | --- | --- |"]
    lines += [f"| {k} | {s} | {impl} | {t * 1e3:.3f} | {'' if f is None else f'{f:.0%}'} |" for k, s, impl, t, f in speed]
    lines += ["", f"## Estimator overhead: digits UNet scaled to {params / 1e6:.0f}M parameters, bfloat16", "",
              "| batch | evaluations | ef.profile s | bare network s | overhead |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {b} | {n} | {r:.3f} | {bare:.3f} | {r / bare - 1:+.1%} |" for b, n, r, bare in over]
    text = "\n".join(lines) + "\n"
    with open(out, "w") as f:
        f.write(text)
    print(text)
    print(f"wrote {out}")
    return 0 if all(e <= tol for *_, e, tol in correct) else 1


if __name__ == "__main__":
    sys.exit(main())
