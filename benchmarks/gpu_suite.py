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
4. What users meet beyond the kernels (issue 32; ``benchmarks/gpu_acceptance.py``): a DiT-class transformer
   (``dit``), SIGTERM and resume, a real out-of-memory error and the adaptive mode on the device (``longrun``),
   the same seed on the device and the CPU (``devices``).
"""
import argparse
import cProfile
import io
import pstats
import os
import platform
import sys
import time
import traceback

if "--smoke" in sys.argv:  # before triton is imported
    os.environ.setdefault("TRITON_INTERPRET", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import entropic_fast as ef  # noqa: E402
from entropic_fast import digits  # noqa: E402
from entropic_fast.adapters import edm  # noqa: E402
from entropic_fast.fingerprint import fingerprint  # noqa: E402
from entropic_fast.kernels import ideal, noise, reference, stats  # noqa: E402

import gpu_acceptance as acceptance  # noqa: E402  (this folder is on sys.path when the script runs)

# datasheet figures (dense): memory bandwidth in bytes/s, FP32 and BF16 tensor FLOP/s
DATASHEET = {"H200": (4.8e12, 67e12, 989e12), "H100 PCIe": (2.0e12, 51e12, 756e12), "H100": (3.35e12, 67e12, 989e12),
             "A100": (2.0e12, 19.5e12, 312e12), "L40S": (0.864e12, 91.6e12, 362e12)}


def datasheet(name):
    return next((v for k, v in DATASHEET.items() if k in name), None)


def timed(fn, device, repeat):
    """Median seconds of ``repeat`` calls (CUDA events on a GPU, wall clock otherwise), host launch included."""
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


def device_timed(fn, device, repeat):
    """Seconds of device time per call: ``fn`` captured in a CUDA graph and replayed 10 times between events
    (so the host's launch cost, hidden behind the network in a real run, is left out); ``timed`` elsewhere."""
    if device.type != "cuda":
        return timed(fn, device, repeat)
    once = timed(fn, device, 1)
    if once > 0.05:  # a slow reference: launch cost is immaterial, one call will do
        return once
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(10):
            fn()
    return timed(graph.replay, device, repeat) / 10


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


def jit_resources():
    """Registers and spills of every kernel the run compiled, read from Triton's JIT caches (best effort)."""
    rows = []
    for mod in (stats, noise, ideal):
        for name, fn in sorted(vars(mod).items()):
            for caches in getattr(fn, "device_caches", {}).values():
                for compiled in caches[0].values():
                    try:
                        compiled._init_handles()
                        consts = str(getattr(getattr(compiled, "src", None), "constants", ""))
                        rows.append((name, consts, compiled.n_regs, compiled.n_spills, compiled.metadata.shared))
                    except Exception as e:  # noqa: BLE001  (an older Triton's cache layout)
                        rows.append((name, f"unreadable: {e}", "", "", ""))
    return rows


def copy_bandwidth(device, smoke):
    """Bytes per second of a large device-to-device copy (read + write)."""
    x = torch.empty(1 << (20 if smoke else 28), dtype=torch.float32, device=device)
    y = torch.empty_like(x)
    t = timed(lambda: y.copy_(x), device, 5)
    return 2 * x.numel() * 4 / t


def kernel_speed(device, smoke, peak_bw):
    rows = []
    shape = (2, 8, 8) if smoke else (4, 64, 64)
    dim = int(np.prod(shape))
    for n in ((4,) if smoke else (256, 1024)):
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
            t = device_timed(fn, device, 1 if smoke else 20)
            rows.append(("accumulate_error", f"{n}x{'x'.join(map(str, shape))} bf16", name, t, moved / t / peak_bw))
    s, rid = torch.rand(n, device=device) * 80, torch.arange(n, device=device)
    moved = n * dim * 8
    for name, fn in (("Triton", lambda: noise.perturb(x0, s, 7, rid)), ("torch twin", lambda: reference.perturb(x0, s, 7, rid)),
                     ("naive torch (randn)", lambda: x0 + s.view(-1, 1, 1, 1) * torch.randn_like(x0))):
        t = device_timed(fn, device, 1 if smoke else 20)
        rows.append(("perturb", f"{n}x{'x'.join(map(str, shape))} fp32", name, t, moved / t / peak_bw))
    spec = torch.zeros(128, *shape, dtype=torch.float64, device=device)
    for name, fn in (("Triton", lambda: stats.accumulate_error(d, x0, idx, acc, spec)),
                     ("torch twin", lambda: reference.accumulate_error(d, x0, idx, acc, spec))):
        t = device_timed(fn, device, 1 if smoke else 20)
        rows.append(("accumulate_error + spectrum", f"{n}x{'x'.join(map(str, shape))} bf16", name, t, None))
    return rows


def ideal_speed(device, smoke, peak_flops):
    """The fused mixture kernel against its twin: FLOP rate (two K x dim products per row)."""
    n, k, dim = (64, 16, 8) if smoke else (8192, 1024, 64)
    g = torch.Generator(device="cpu").manual_seed(1)
    means = torch.randn(k, dim, generator=g, dtype=torch.float64).to(device)
    var, logw = torch.full((k,), 0.05, dtype=torch.float64, device=device), torch.zeros(k, dtype=torch.float64,
                                                                                          device=device)
    x0 = means[torch.randint(k, (n,), generator=g).to(device)].float()
    s, rid = torch.rand(n, device=device) * 3 + 0.01, torch.arange(n, device=device)
    idx = rid % 128
    acc = torch.zeros(4, 128, dtype=torch.float64, device=device)
    flops = 4.0 * n * k * dim
    rows = []
    for name, fn in (("Triton", lambda: ideal.ideal_error(means, var, logw, x0, s, 3, rid, idx, acc)),
                     ("torch twin", lambda: reference.ideal_error(means, var, logw, x0, s, 3, rid, idx, acc))):
        t = device_timed(fn, device, 1 if smoke else 20)
        frac = flops / t / peak_flops if peak_flops else None
        rows.append(("ideal_error", f"{n} rows, K={k}, dim={dim}", name, t, frac))
    return rows


def spectral_crossover(device, smoke):
    """Spectrum accumulation per image side: the in-kernel DFT against torch.fft plus the binning kernel."""
    rows = []
    for side in ((8,) if smoke else (8, 16, 24, 32)):
        n, c = (4, 1) if smoke else (256, 4)
        d = torch.randn(n, c, side, side, device=device, dtype=torch.bfloat16)
        x0 = torch.randn(n, c, side, side, device=device)
        idx = torch.arange(n, device=device) % 128
        acc = torch.zeros(4, 128, dtype=torch.float64, device=device)
        spec = torch.zeros(128, c, side, side, dtype=torch.float64, device=device)
        times = {}
        for name, limit in (("DFT kernel", stats.MAX_DFT_SIDE), ("torch.fft + bin", 0)):
            old, stats.MAX_DFT_SIDE = stats.MAX_DFT_SIDE, limit
            try:
                times[name] = device_timed(lambda: stats.accumulate_error(d, x0, idx, acc, spec), device,
                                           1 if smoke else 30)
            finally:
                stats.MAX_DFT_SIDE = old
        rows.append((f"{n}x{c}x{side}x{side}", times["DFT kernel"], times["torch.fft + bin"]))
    return rows


def estimator_overhead(device, smoke, host_profile=None):
    """``ef.profile`` against bare calls of a ~300M-parameter net on 4x64x64 inputs in bfloat16, eager and
    compiled (the same compiled module for both, so the loop's own cost is what differs)."""
    ch, shape, batches, samples, grid = (16, (4, 8, 8), (8,), 8, ef.sigma_grid(3)) if smoke else \
        (896, (4, 64, 64), (64, 256), 256, ef.sigma_grid(8))  # ch 896: about 300M parameters
    module = digits.EDMDenoiser(ch=ch, channels=shape[0]).to(device).eval()
    params = sum(p.numel() for p in module.parameters())
    data = torch.randn(1024, *shape, device=device)
    t = time.perf_counter()
    fingerprint(module)
    t_print = time.perf_counter() - t
    variants = [("eager", edm.denoiser(module, dtype=torch.bfloat16), batches[::-1])]
    if not smoke:
        variants.append(("torch.compile", edm.denoiser(torch.compile(module), dtype=torch.bfloat16), batches[-1:]))
    rows = []
    for mode, net, bs in variants:  # bfloat16 autocast, as EDM2 samples
        for batch in bs:
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
            rows.append((mode, batch, n, float(np.median(t_run)), float(np.median(t_bare))))
            if host_profile and mode == "eager" and batch == batches[-1]:
                sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
                cProfile.runctx("run(); sync()", globals(), locals(), host_profile)
    return params, t_print, rows


def compile_option(device, smoke):
    """``ef.profile(..., compile=True)`` runs and agrees with the eager profile (first call includes compiling)."""
    module = digits.EDMDenoiser(ch=16 if smoke else 64, channels=4).to(device).eval()
    data = torch.randn(256, 4, 8 if smoke else 32, 8 if smoke else 32, device=device)
    kw = dict(samples=40, batch_size=96, progress=False, device=device)
    grid = ef.sigma_grid(4)
    t = time.perf_counter()
    a = ef.profile(module, data, grid, **kw)
    t_eager = time.perf_counter() - t
    t = time.perf_counter()
    b = ef.profile(module, data, grid, compile=True, **kw)
    t_compiled = time.perf_counter() - t
    return float(np.abs(b.mse / a.mse - 1).max()), t_eager, t_compiled


def section(lines, title, fn, render):
    """Run one section; its table, or the error it raised, goes into the report (the other sections still run)."""
    lines += ["", f"## {title}", ""]
    t = time.time()
    try:
        out = fn()
    except Exception:
        lines += ["```", traceback.format_exc().strip(), "```"]
        print(traceback.format_exc(), file=sys.stderr)
        return None
    lines += render(out) + ["", f"({time.time() - t:.0f} s)"]
    return out


SECTIONS = ("correctness", "resources", "speed", "crossover", "overhead", "compile", "dit", "longrun", "devices")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU through Triton's interpreter (CI)")
    ap.add_argument("--out", default=None, help="markdown output (default benchmarks/results/gpu_<device>.md)")
    ap.add_argument("--sections", default=",".join(SECTIONS), help=f"comma list of: {', '.join(SECTIONS)}")
    ap.add_argument("--host-profile", default=None, help="write cProfile statistics of one profile run here")
    args = ap.parse_args()
    wanted = set(args.sections.split(","))
    if wanted - set(SECTIONS):
        ap.error(f"unknown sections {sorted(wanted - set(SECTIONS))}; known: {', '.join(SECTIONS)}")
    if args.smoke:
        device, name = torch.device("cpu"), "CPU smoke run (interpreter)"
    elif not torch.cuda.is_available():
        print("gpu_suite.py needs a CUDA device (or --smoke for a CPU dry run)", file=sys.stderr)
        return 2
    else:
        device, name = torch.device("cuda"), torch.cuda.get_device_name()
    t0 = time.time()
    slug = "".join(c if c.isalnum() else "_" for c in name).strip("_").lower()
    out = args.out or os.path.join(os.path.dirname(__file__), "results", f"gpu_{slug}.md")
    import triton
    lines = [f"# GPU suite: {name}", "", f"Command: `python benchmarks/gpu_suite.py{' --smoke' if args.smoke else ''}`  ",
             f"Machine: {name}; torch {torch.__version__}, triton {triton.__version__}, python "
             f"{platform.python_version()}; {time.strftime('%Y-%m-%d')}"]
    sheet = datasheet(name)

    def write():
        with open(out, "w") as f:
            f.write("\n".join(lines) + "\n")

    correct = None
    if "correctness" in wanted:
        correct = section(lines, "Kernels against their torch twins", lambda: correctness(device, args.smoke),
                          lambda rows: ["| launcher | shape | max relative error | tolerance | ok |",
                                        "| --- | --- | --- | --- | --- |"] + [
                              f"| {k} | {s} | {e:.2e} | {tol:g} | {'yes' if e <= tol else 'NO'} |"
                              for k, s, e, tol in rows])
        write()
    if "resources" in wanted and not args.smoke:
        section(lines, "Registers and spills of the kernels compiled above (Triton JIT)", jit_resources, lambda rows: [
            "| kernel | constants | registers | spills | shared bytes |", "| --- | --- | --- | --- | --- |"] + [
            f"| {k} | {c[:80]} | {r} | {sp} | {sh} |" for k, c, r, sp, sh in rows])
    if "speed" in wanted:
        bw = copy_bandwidth(device, args.smoke)
        note = f"measured copy bandwidth {bw / 1e9:.0f} GB/s"
        note += f"; datasheet {sheet[0] / 1e9:.0f} GB/s" if sheet else ""
        head = ["| launcher | input | implementation | device ms per call (CUDA graph) "
                "| fraction of copy bandwidth (FP32 peak for ideal_error) |",
                "| --- | --- | --- | --- | --- |"]
        section(lines, f"Kernel speed ({note})", lambda: kernel_speed(device, args.smoke, bw)
                + ideal_speed(device, args.smoke, sheet[1] if sheet else None), lambda rows: head + [
                    f"| {k} | {s} | {impl} | {t * 1e3:.3f} | {'' if f is None else f'{f:.0%}'} |"
                    for k, s, impl, t, f in rows])
        write()
    if "crossover" in wanted:
        section(lines, "Spectral accumulation: in-kernel DFT against torch.fft + binning "
                f"(MAX_DFT_SIDE = {stats.MAX_DFT_SIDE})", lambda: spectral_crossover(device, args.smoke), lambda rows: [
                    "| input (bf16) | DFT kernel ms | torch.fft + bin ms | DFT / fft |", "| --- | --- | --- | --- |"] + [
                    f"| {s} | {a * 1e3:.3f} | {b * 1e3:.3f} | {a / b:.2f} |" for s, a, b in rows])
        write()
    if "overhead" in wanted:
        section(lines, "Estimator overhead: digits UNet scaled to 4x64x64 and about 300M parameters, bfloat16 autocast",
                lambda: estimator_overhead(device, args.smoke, args.host_profile), lambda r: [
                    f"{r[0] / 1e6:.0f}M parameters (fingerprinting its weights once per run: {r[1]:.3f} s); ef.profile "
                    "against bare network calls on prepared inputs, medians of 3 interleaved runs.", "",
                    "| network | batch | evaluations | ef.profile s | bare network s | overhead | profile throughput / bare |",
                    "| --- | --- | --- | --- | --- | --- | --- |"] + [
                    f"| {m} | {b} | {n} | {t:.3f} | {bare:.3f} | {t / bare - 1:+.1%} | {bare / t:.1%} |"
                    for m, b, n, t, bare in r[2]])
        write()
        if args.host_profile:
            text = io.StringIO()
            pstats.Stats(args.host_profile, stream=text).sort_stats("cumtime").print_stats(40)
            with open(args.host_profile + ".txt", "w") as f:
                f.write(text.getvalue())
    if "compile" in wanted and not args.smoke:  # compiling is slow on a CPU; tests/test_estimate.py checks it there
        section(lines, "profile(compile=True)", lambda: compile_option(device, args.smoke), lambda r: [
            f"Max relative difference from the eager profile {r[0]:.1e}; eager {r[1]:.1f} s, compiled {r[2]:.1f} s "
            "(compilation included)."])
    for key, title, fn, render in (
            ("dit", "DiT-class transformers in bfloat16: ef.profile against bare calls and the plain torch loop",
             lambda: acceptance.dit(device, args.smoke, timed), acceptance.dit_table),
            ("longrun", "Long runs on the device: SIGTERM and resume, out of memory, the adaptive mode",
             lambda: acceptance.longrun(device, args.smoke), acceptance.longrun_table),
            ("devices", "The same seed on the device and the CPU (the digits model)",
             lambda: acceptance.devices(device, args.smoke), acceptance.devices_table)):
        if key in wanted:
            section(lines, title, fn, render)
            write()
    lines += ["", f"Total {time.time() - t0:.0f} s."]
    write()
    print("\n".join(lines))
    print(f"wrote {out}")
    if correct is None:
        return 1 if "correctness" in wanted else 0
    return 0 if all(e <= tol for *_, e, tol in correct) else 1


if __name__ == "__main__":
    sys.exit(main())
