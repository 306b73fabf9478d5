"""CI runs a reduced version of each benchmark (their full runs: see benchmarks/results/)."""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
import paper_mixtures  # noqa: E402
import schedule_zoo  # noqa: E402


def test_paper_mixtures_quick(tmp_path):
    problems, steps, results = paper_mixtures.run(quick=True)
    text = paper_mixtures.write(problems, steps, results, str(tmp_path), quick=True)
    assert (tmp_path / "paper_mixtures_quick.md").exists() and (tmp_path / "paper_mixtures_quick.png").exists()
    assert all(np.isfinite(v).all() for v in results.values())
    # every schedule improves with more steps
    for name in problems:
        for kind in paper_mixtures.KINDS:
            assert np.mean(results[(name, kind, steps[-1])]) < np.mean(results[(name, kind, steps[0])]), (name, kind)
    assert text.count("steps") >= len(problems) and "## The paper's claims, checked" in text


def test_mixtures_are_normalised():
    for k in (5, 15):
        for continuous in (False, True):
            means, var, w = paper_mixtures.mixture(k, continuous)
            assert abs(np.sum(w * means)) < 1e-12
            assert abs(np.sum(w * (var + means**2)) - 1) < 1e-12


def test_schedule_zoo_quick(tmp_path):
    rows = schedule_zoo.run(quick=True)
    text = schedule_zoo.write(rows, str(tmp_path), quick=True)
    assert len(rows) == 2 * 2 * 2 and "**wins**" in text
    for pname, sname, K, vals in rows:
        assert ("spectral" in vals) == (pname == "gauss-spread-8x8")
        assert all(np.isfinite(v) and v >= 0 for v in vals.values())


def test_gpu_suite_smoke_run(tmp_path):
    """The GPU suite's whole path at tiny sizes on the CPU (kernels in the interpreter), so it never rots."""
    import subprocess
    out = tmp_path / "gpu.md"
    run = subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "..", "benchmarks", "gpu_suite.py"),
                          "--smoke", "--out", str(out)], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "TRITON_INTERPRET": "1"})
    assert run.returncode == 0, run.stderr[-3000:]
    text = out.read_text()
    assert "| NO |" not in text and "## Estimator overhead" in text and text.count("| yes |") >= 10
    # issue 32's sections: a DiT, SIGTERM and resume, OOM halving, adaptive and the same seed across backends
    assert "| DiT-S/2 | 4x8x8 |" in text and "exit 143" in text, text[-3000:]
    assert "counts equal: yes" in text and "at 16: yes" in text and "same plan: yes" in text and "Traceback" not in text
    assert "| torch | off | 0.0e+00 |" in text  # the CPU path against itself: the same bits


def test_gaussian_kl_quick(tmp_path):
    import gaussian_kl
    rows, lam = gaussian_kl.run(quick=True)
    text = gaussian_kl.write(rows, lam, str(tmp_path), quick=True)
    assert (tmp_path / "gaussian_kl_quick.md").exists() and "**" in text
    for (K, _), vals in rows:  # the optimum is the lowest of the kinds at every step count
        assert vals["gaussian-optimal"] <= min(v for k, v in vals.items() if k != "best tangent") + 1e-12


def test_las_accuracy_quick(tmp_path):
    import las_accuracy
    text = las_accuracy.write(las_accuracy.run(quick=True), str(tmp_path), quick=True)
    assert text.count("| Gaussian") == 2 and text.count("| 16 atoms") == 2


def test_sample_efficiency_quick(tmp_path):
    import sample_efficiency
    rows, _ = sample_efficiency.run(quick=True)
    text = sample_efficiency.write((rows, 1.0), str(tmp_path), quick=True)
    assert (tmp_path / "sample_efficiency_quick.md").exists()
    assert len(rows) == 2 * 5 and all(r.count("|") == len(sample_efficiency.COLUMNS) + 4 for r in rows), rows
    plain = [r for r in rows if "fixed 64 per sigma, plain" in r]
    assert all(" 4096 |" in r for r in plain) and "evaluations" in text  # 64 x 64 sigmas (the quick grid)


def test_time_to_accuracy_quick(tmp_path):
    """The defaults' benchmark at a reduced size: every cell finite, the table and its JSON written."""
    import json
    import time_to_accuracy
    result = time_to_accuracy.run(quick=True)
    text = time_to_accuracy.write(result, str(tmp_path), quick=True)
    rows = json.load(open(tmp_path / "time_to_accuracy_quick.json"))
    assert len(rows) == 2 * 2 and "Fastest within" in text
    for r in rows:
        assert all(s > 0 for s in r["seconds"]) and all(np.isfinite(r["error"])) and min(r["evaluations"]) >= 1024
    # the default keeps the controls on the digits model: fewer rows than the plain mean to the same band
    digits = {r["control"]: np.mean(r["evaluations"]) for r in rows if r["model"] == "digits model"}
    assert digits["auto"] < digits[None]


def test_schedule_tolerance_quick(tmp_path):
    import schedule_tolerance
    rows, seconds = schedule_tolerance.run(quick=True)
    text = schedule_tolerance.write(rows, seconds, str(tmp_path), quick=True)
    assert [r[0] for r in rows] == ["reference", "3%, profile seed 0", "1%, profile seed 0"] and "dpmpp_2m 8" in text
    assert rows[0][2] == 0 and all(np.isfinite([m for _, _, _, fd in rows for m, _ in fd]))


def test_control_ablation_quick(tmp_path):
    """The controls' ablation at a reduced size: the plain mean and the two summed controls, and the coverage rows,
    every cell finite, the table written."""
    import control_ablation
    rows, cover, seconds = control_ablation.run(quick=True)
    text = control_ablation.write(rows, cover, seconds, str(tmp_path), quick=True)
    assert len(rows) == 2 * 2 and len(cover) == 2 * 2 and "band holds every inner sigma" in text
    for r in rows + cover:
        for ev, err, _, share, sec in r["runs"]:
            assert ev >= 1024 and np.isfinite(err) and 0 <= share <= 1 and sec > 0
