"""Compile every Triton kernel, in every specialisation its launcher can choose, for real NVIDIA targets:
registers, stack bytes (spills), shared memory, and whether it fits. Needs no GPU.

``python -m entropic_fast.kernels.audit [--arch 80,86,89,90] [--json]`` goes over a table of
realistic inputs (images 1x8x8 to 3x512x512, flat dimensions 2 to 65,536, point sets and GMMs of
dimension 2 to 16,384, float32 / bfloat16 / float16 / float64 networks and float32 / float64
data), maps each to the tiles the launchers pick (``noise.config``, ``stats.row_config``,
``stats.spectrum_config``, ``stats.bin_config``, ``ideal.config``), compiles each distinct
specialisation once per architecture with ``triton.compile(ASTSource(...), target=GPUTarget(...))``,
and reads the cubin with Triton's own ``cuobjdump --dump-resource-usage``. A specialisation is
``ok`` when it compiles, uses no stack (a stack frame is spilled registers or local arrays) and its
shared memory fits the architecture's per-block limit. Exit status 1 if any is not ok.

Triton also specialises on integer arguments divisible by 16 (alignment hints); the audit compiles
the generic case. Kernels compiled here are the ones a GPU would run, not the CPU interpreter's.
"""
import argparse
import concurrent.futures
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import warnings

SHARED_LIMIT = {80: 163 * 1024, 86: 99 * 1024, 89: 99 * 1024, 90: 227 * 1024}  # bytes per block (opt-in max)
IMAGES = [(1, 8, 8), (3, 32, 32), (4, 64, 64), (3, 64, 64), (3, 128, 128), (3, 256, 256), (3, 512, 512)]
FLAT = [2, 16, 100, 1000, 4096, 65536]
MIXTURE_DIMS = [2, 16, 64, 1024, 16384]
NET_DTYPES = ("float32", "bfloat16", "float16", "float64")
DATA_DTYPES = ("float32", "float64")
_PTR = {"float32": "*fp32", "bfloat16": "*bf16", "float16": "*fp16", "float64": "*fp64"}


def _kernels():
    from . import ideal, noise, stats
    return noise, stats, ideal


def specs():
    """``(kernel, constexprs, num_warps, signature, shape, dtype)`` for every input of the table."""
    import triton.language as tl

    noise, stats, ideal = _kernels()
    out = []
    for shape in IMAGES + [(d,) for d in FLAT]:
        dim = math.prod(shape)
        for xd in DATA_DTYPES:
            x0, sig = _PTR[xd], "*fp64" if xd == "float64" else "*fp32"
            out.append(("_perturb_kernel", noise.config(dim), 4,
                        {"x0_ptr": x0, "sigma_ptr": sig, "rid_ptr": "*i64", "out_ptr": x0, "dim": "i32", "seed": "i64"},
                        shape, xd))
            for nd in NET_DTYPES:
                label = f"net {nd}, data {xd}"
                compute = tl.float64 if nd == xd == "float64" else tl.float32
                row = stats.row_config(dim)
                out.append(("_row_error_kernel", {**row, "COMPUTE": compute}, 4,
                            {"d_ptr": _PTR[nd], "x0_ptr": x0, "idx_ptr": "*i64", "acc_ptr": "*fp64", "ok_ptr": "*i8",
                             "part_ptr": "*fp64", "dim": "i32", "n_sigmas": "i32"}, shape, label))
                if row["SPLIT"]:
                    out.append(("_row_finish_kernel", stats.finish_config(-(-dim // row["CHUNK"])), 4,
                                {"part_ptr": "*fp64", "idx_ptr": "*i64", "acc_ptr": "*fp64", "ok_ptr": "*i8",
                                 "parts": "i32", "n_sigmas": "i32"}, shape, label))
                if len(shape) != 3:
                    continue
                cfg = stats.spectrum_config(*shape[1:])
                if cfg is None:  # torch.fft, then the binning kernel on float32 power
                    out.append(("_bin_power_kernel", stats.bin_config(dim), 4,
                                {"power_ptr": "*fp32", "idx_ptr": "*i64", "spec_ptr": "*fp64", "size": "i32"},
                                shape, label))
                else:
                    out.append(("_spectrum_kernel", cfg, 4,
                                {"d_ptr": _PTR[nd], "x0_ptr": x0, "idx_ptr": "*i64", "ok_ptr": "*i8", "ch_ptr": "*fp32",
                                 "sh_ptr": "*fp32", "cw_ptr": "*fp32", "sw_ptr": "*fp32", "spec_ptr": "*fp64",
                                 "C": "i32", "H": "i32", "W": "i32"}, shape, label))
    for dim in MIXTURE_DIMS:
        for xd in DATA_DTYPES:
            cfg = dict(ideal.config(dim))
            warps = cfg.pop("num_warps")
            out.append(("_ideal_kernel", cfg, warps,
                        {"means_ptr": "*fp32", "var_ptr": "*fp32", "logw_ptr": "*fp32", "x0_ptr": _PTR[xd],
                         "sigma_ptr": "*fp32", "idx_ptr": "*i64", "acc_ptr": "*fp64", "xs_ptr": "*fp32",
                         "mu_acc_ptr": "*fp32", "w_ptr": "*fp64", "rows": "i32", "K": "i32", "dim": "i32",
                         "n_sigmas": "i32"},
                        (dim,), f"data {xd}"))
    return out


def _key(spec):
    kernel, const, warps, sig = spec[:4]
    return kernel, tuple(sorted((k, str(v)) for k, v in const.items())), warps, tuple(sorted(sig.items()))


def _tool(name):
    import triton
    return os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", name)


def _compile(job):
    """Compile one specialisation for one arch; ``(registers, stack, shared)`` or an error string."""
    (kernel, const, warps, sig), arch = job
    warnings.simplefilter("ignore")
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    modules = _kernels()
    fn = next(getattr(m, kernel) for m in modules if hasattr(m, kernel))
    try:
        k = triton.compile(ASTSource(fn, signature={**sig, **{c: "constexpr" for c in const}}, constexprs=const),
                           target=GPUTarget("cuda", arch, 32), options={"num_warps": warps})
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "k.cubin")
            with open(path, "wb") as f:
                f.write(k.asm["cubin"])
            text = subprocess.run([_tool("cuobjdump"), "--dump-resource-usage", path], capture_output=True,
                                  text=True, check=True).stdout
    except Exception as e:  # a kernel that does not compile for this arch is a finding, not a crash
        return f"{type(e).__name__}: {str(e).strip().splitlines()[-1][:300] if str(e).strip() else ''}"
    m = re.search(r"REG:(\d+) STACK:(\d+) SHARED:(\d+)", text)
    return int(m[1]), int(m[2]), int(m[3]) + int(k.metadata.shared)


def audit(archs=(80, 90), workers=None):
    """One record per input of the table and arch (see the module docstring)."""
    table = specs()
    unique = {}
    for spec in table:
        unique.setdefault(_key(spec), spec[:4])
    jobs = [(spec, arch) for spec in unique.values() for arch in archs]
    ctx = None
    if sys.platform.startswith("linux"):
        import multiprocessing
        ctx = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(workers or os.cpu_count() or 1, mp_context=ctx) as pool:
        results = dict(zip([(_key(s), a) for s, a in jobs], pool.map(_compile, jobs)))
    records = []
    for spec in table:
        kernel, const, warps, sig, shape, dtype = spec
        for arch in archs:
            r = results[(_key(spec), arch)]
            rec = {"kernel": kernel, "arch": f"sm_{arch}", "shape": "x".join(map(str, shape)), "dtype": dtype,
                   "specialisation": {**{k: str(v) for k, v in const.items()}, "num_warps": warps},
                   "shared_limit_bytes": SHARED_LIMIT[arch]}
            if isinstance(r, str):
                rec.update(registers=None, stack_bytes=None, shared_bytes=None, ok=False, error=r)
            else:
                reg, stack, shared = r
                rec.update(registers=reg, stack_bytes=stack, shared_bytes=shared,
                           ok=stack == 0 and shared <= SHARED_LIMIT[arch])
            records.append(rec)
    return records


def _table(records):
    """One line per kernel, specialisation and arch (the worst over its pointer dtypes), with its inputs."""
    groups = {}
    for r in records:
        spec = " ".join(f"{k}={str(v).split('.')[-1]}" for k, v in r["specialisation"].items())
        groups.setdefault((r["kernel"], spec, r["arch"]), []).append(r)
    lines = [f"{'kernel':<18} {'specialisation':<38} {'arch':<6} {'regs':>4} {'stack':>5} {'shared':>7} "
             f"{'limit':>7}  ok   inputs"]
    for (kernel, spec, arch), rs in groups.items():
        done = [r for r in rs if r["registers"] is not None]
        cells = " ".join(f"{max(r[k] for r in done):>{w}}" for k, w in
                         (("registers", 4), ("stack_bytes", 5), ("shared_bytes", 7))) if done else "   -     -       -"
        errors = sorted({r["error"] for r in rs if r.get("error")})
        shapes = sorted({r["shape"] for r in rs})
        lines.append(f"{kernel:<18} {spec:<38} {arch:<6} {cells} {rs[0]['shared_limit_bytes']:>7}  "
                     f"{'yes' if all(r['ok'] for r in rs) else 'NO ':<4} {', '.join(shapes)} ({len(rs)} inputs)"
                     + (f"  {'; '.join(errors)}" if errors else ""))
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m entropic_fast.kernels.audit", description=__doc__.split("\n")[0])
    ap.add_argument("--arch", default="80,90", help="comma-separated SM versions, e.g. 80,86,89,90")
    ap.add_argument("--json", action="store_true", help="print a JSON list of records")
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args(argv)
    try:
        archs = tuple(int(a) for a in args.arch.split(","))
    except ValueError:
        ap.error(f"--arch must be comma-separated integers, got {args.arch!r}")
    unknown = [a for a in archs if a not in SHARED_LIMIT]
    if unknown:
        ap.error(f"unknown arch {unknown}; known: {', '.join(map(str, SHARED_LIMIT))}")
    if os.environ.get("TRITON_INTERPRET", "0") == "1":  # compile real kernels, not interpreted ones
        env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
        return subprocess.run([sys.executable, "-m", "entropic_fast.kernels.audit", *(argv or sys.argv[1:])],
                              env=env).returncode
    records = audit(archs, args.workers)
    print(json.dumps(records, indent=1) if args.json else _table(records))
    bad = [r for r in records if not r["ok"]]
    if bad and not args.json:
        print(f"\n{len(bad)} of {len(records)} (input, arch) pairs do not fit", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
