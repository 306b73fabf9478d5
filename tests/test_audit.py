"""The compile audit: every Triton kernel, in every specialisation its launcher can pick, compiled for
sm_80 and sm_90 on this CPU machine, fits (no stack, shared memory within the per-block limit)."""
import json
import os
import subprocess
import sys

from entropic_fast.kernels import audit, ideal, stats


def test_every_kernel_compiles_and_fits_on_sm80_and_sm90():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    run = subprocess.run([sys.executable, "-m", "entropic_fast.kernels.audit", "--arch", "80,90", "--json"],
                         capture_output=True, text=True, env=env, timeout=900)
    records = json.loads(run.stdout)
    assert {r["kernel"] for r in records} == {"_perturb_kernel", "_row_error_kernel", "_row_finish_kernel", "_spectrum_kernel",
                                              "_bin_power_kernel", "_ideal_kernel"}
    assert {r["arch"] for r in records} == {"sm_80", "sm_90"}
    assert {"3x512x512", "4x64x64", "16384"} <= {r["shape"] for r in records}
    for key in ("kernel", "arch", "shape", "dtype", "registers", "stack_bytes", "shared_bytes", "shared_limit_bytes",
                "ok"):
        assert all(key in r for r in records)
    bad = [r for r in records if not r["ok"]]
    assert not bad, bad[:3]
    assert run.returncode == 0


def test_the_audit_finds_what_does_not_fit():
    """The check itself: the old 128-side DFT tile and 64-wide ideal tiles are reported as not fitting."""
    const = {"HP": 128, "WP": 128, "BK": 32}
    sig = {"d_ptr": "*fp32", "x0_ptr": "*fp32", "idx_ptr": "*i64", "ok_ptr": "*i8", "ch_ptr": "*fp32", "sh_ptr": "*fp32",
           "cw_ptr": "*fp32", "sw_ptr": "*fp32", "spec_ptr": "*fp64", "C": "i32", "H": "i32", "W": "i32"}
    env_ok = os.environ.pop("TRITON_INTERPRET", None)
    try:
        code = ("import json; from entropic_fast.kernels import audit; "
                f"print(json.dumps(audit._compile((('_spectrum_kernel', {const!r}, 4, {sig!r}), 90))))")
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    finally:
        if env_ok is not None:
            os.environ["TRITON_INTERPRET"] = env_ok
    regs, stack, shared = json.loads(run.stdout)
    assert shared > audit.SHARED_LIMIT[90] or stack > 0


def test_launchers_never_pick_a_tile_the_audit_does_not_cover():
    assert stats.spectrum_config(33, 8) is None and stats.spectrum_config(32, 32)["HP"] == 32
    assert ideal.config(16)["BD"] == 16 and ideal.config(17)["num_warps"] == 8
    covered = {(r[0], str(sorted(r[1].items()))) for r in audit.specs()}
    for dim in (2, 3, 17, 100, 5000, 70000):
        cfg = dict(ideal.config(dim))
        cfg.pop("num_warps")
        assert ("_ideal_kernel", str(sorted(cfg.items()))) in covered
