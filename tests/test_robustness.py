"""Scale out and survive: torch.distributed, checkpoint/resume, non-finite outputs, out-of-memory, bad input."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import entropic_fast as ef
from entropic_fast.errors import InputError
from entropic_fast.estimate import CheckpointMismatch

ROOT = os.path.join(os.path.dirname(__file__), "..")
GRID = ef.sigma_grid(16)


def gmm():
    g = torch.Generator().manual_seed(0)
    return ef.analytic.GMM(torch.randn(6, 4, generator=g, dtype=torch.float64), 0.1)


def test_torchrun_two_processes_equal_one_and_only_rank0_writes(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517",
           os.path.join(ROOT, "examples", "torchrun_profile.py"), "--model", "gmm", "--samples", "100",
           "--grid", "16", "--out", str(out / "p.npz")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert os.listdir(out) == ["p.npz"]
    dist = ef.Profile.load(out / "p.npz")
    single = ef.profile(gmm(), gmm(), GRID, samples=100, progress=False)
    np.testing.assert_allclose(dist.sum, single.sum, rtol=1e-12)
    np.testing.assert_allclose(dist.sumsq, single.sumsq, rtol=1e-12)
    np.testing.assert_array_equal(dist.count, single.count)


class Flaky:
    """A denoiser that raises after ``fail_after`` calls and counts the rows it saw."""

    def __init__(self, fail_after=None, exc=RuntimeError):
        self.model, self.calls, self.rows, self.fail_after, self.exc = ef.analytic.Gaussian(0.5, (3,)), 0, 0, fail_after, exc

    def __call__(self, x, sigma):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise self.exc("stop here")
        self.calls += 1
        self.rows += len(x)
        return self.model(x, sigma)

    def fingerprint(self):  # its counters change as it runs: only the model determines the result
        return "flaky gaussian 0.5"


@pytest.mark.parametrize("batch_size, exc", [(64, RuntimeError), (20, KeyboardInterrupt), (7, RuntimeError)])
def test_killed_run_resumes_to_the_uninterrupted_profile(tmp_path, batch_size, exc):
    data = torch.randn(200, 3, dtype=torch.float64)
    whole = ef.profile(Flaky(), data, GRID, samples=70, batch_size=batch_size, progress=False)
    ck = tmp_path / "ck.npz"
    first = Flaky(fail_after=9, exc=exc)
    with pytest.raises(exc, match="stop here"):
        ef.profile(first, data, GRID, samples=70, batch_size=batch_size, checkpoint=ck, checkpoint_every=5,
                   progress=False)
    assert ck.exists()
    second = Flaky()
    resumed = ef.profile(second, data, GRID, samples=70, batch_size=batch_size, checkpoint=ck, progress=False)
    np.testing.assert_allclose(resumed.sum, whole.sum, rtol=1e-12)
    np.testing.assert_allclose(resumed.sumsq, whole.sumsq, rtol=1e-12)
    np.testing.assert_array_equal(resumed.count, whole.count)
    # the rerun only did what was left: only rows of units that were in flight are computed twice
    total = 70 * GRID.size
    assert second.rows < total and first.rows + second.rows <= total + max(batch_size, 32)
    third = Flaky()
    again = ef.profile(third, data, GRID, samples=70, batch_size=batch_size, checkpoint=ck, progress=False)
    assert third.calls == 0 and np.array_equal(again.sum, resumed.sum)


def test_checkpoint_from_other_arguments_is_refused(tmp_path):
    data = torch.randn(50, 3, dtype=torch.float64)
    ck = tmp_path / "ck.npz"
    ef.profile(Flaky(), data, GRID, samples=40, checkpoint=ck, progress=False)
    with pytest.raises(CheckpointMismatch, match=r"seed: checkpoint 0, this run 1"):
        ef.profile(Flaky(), data, GRID, samples=40, seed=1, checkpoint=ck, progress=False)
    with pytest.raises(CheckpointMismatch, match=r"grid: checkpoint"):
        ef.profile(Flaky(), data, ef.sigma_grid(8), samples=40, checkpoint=ck, progress=False)
    with pytest.raises(CheckpointMismatch, match=r"data_shape: checkpoint \[3\], this run \[4\]"):
        ef.profile(lambda x, s: x, torch.randn(50, 4), GRID, samples=40, checkpoint=ck, progress=False)
    (tmp_path / "bad.npz").write_text("junk")
    with pytest.raises(CheckpointMismatch, match="not readable"):
        ef.profile(Flaky(), data, GRID, samples=40, checkpoint=tmp_path / "bad.npz", progress=False)


def test_non_finite_raise_names_sigma_and_skip_records():
    def bad(x, sigma):
        out = x.clone()
        out[sigma > 5.0] = torch.nan
        return out

    data = torch.randn(30, 2)
    with pytest.raises(InputError, match=r"not finite at sigma=5\.\d+ \(40 of 40 samples"):
        ef.profile(bad, data, GRID, samples=40, progress=False)
    p = ef.profile(bad, data, GRID, samples=40, nonfinite="skip", progress=False)
    high = GRID > 5.0
    assert p.meta["dropped"] == 40 * high.sum() and np.all(p.count[high] == 0) and np.all(p.count[~high] == 40)


def test_out_of_memory_halves_the_batch_and_goes_on():
    oom = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    seen = []

    def picky(x, sigma):
        seen.append(len(x))
        if len(x) > 40:
            raise oom("CUDA out of memory (simulated)")
        return x * 0.5

    data = torch.randn(100, 3)
    with pytest.warns(UserWarning, match="out of memory at batch size"):
        p = ef.profile(picky, data, GRID, samples=64, batch_size=128, progress=False)
    ref = ef.profile(lambda x, s: x * 0.5, data, GRID, samples=64, batch_size=128, progress=False)
    np.testing.assert_allclose(p.sum, ref.sum, rtol=1e-6)
    assert p.meta["batch_size_used"] <= 40 and max(seen[-5:]) <= 40


@pytest.mark.parametrize("call, match", [
    (lambda: ef.sigma_grid(8, -1.0, 1.0), "sigma_min < sigma_max, got sigma_min=-1.0"),
    (lambda: ef.profile(lambda x, s: x, torch.randn(5, 2), [0.5, 0.1]), r"strictly ascending, got 0.5 then 0.1"),
    (lambda: ef.profile(lambda x, s: x, torch.randn(5, 2), [0.0, 0.1]), "finite and > 0"),
    (lambda: ef.profile(lambda x, s: x[:, :1], torch.randn(5, 2), GRID, samples=2, progress=False),
     r"denoiser output has shape \(32, 1\), expected the input's \(32, 2\)"),
    (lambda: ef.profile(lambda x, s, y: x, torch.randn(5, 2), GRID, labels=torch.zeros(4)),
     r"one row per data row \(5\)"),
    (lambda: ef.profile(lambda x, s: x, torch.randn(5, 2), GRID, nonfinite="ignore"), "nonfinite must be"),
    (lambda: ef.schedule(ef.Profile.from_curve(GRID, GRID, 1), 1), "steps must be an integer >= 2, got 1"),
    (lambda: ef.schedule(ef.Profile.from_curve(GRID, GRID, 1), 8, sigma_min=1.0, sigma_max=0.5),
     "sigma_min < sigma_max"),
    (lambda: ef.schedule(ef.Profile.from_curve(GRID, GRID, 1), 8, sigma_max=1e3), r"sigma_max=1000.0"),
    (lambda: ef.schedule(ef.Profile.from_curve(GRID, GRID, 1), 8, "cosine"),
     "unknown schedule kind 'cosine'; known kinds: entropic, rescaled, las, spectral, edm"),
    (lambda: ef.entropic_time(ef.Profile.from_curve(GRID, GRID, 1), "edm"), "unknown schedule kind 'edm'"),
])
def test_bad_input_messages(call, match):
    with pytest.raises(InputError, match=match):
        call()


def test_out_of_memory_retry_runs_after_the_failed_call_is_freed():
    """A real OOM leaves the failed call's activations in its traceback: retrying inside the ``except`` kept them
    alive, so a capped CUDA process halved down to one row and failed (seen on an H200). The retry must see them
    freed."""
    import weakref
    oom = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    failed = []

    def net(x, sigma):
        assert all(r() is None for r in failed), "the failed call's tensors are still alive at the retry"
        if len(x) > 16:
            activations = torch.empty(len(x), 1000)
            failed.append(weakref.ref(activations))
            raise oom("CUDA out of memory (simulated, with activations in the failed frame)")
        return x * 0.5

    with pytest.warns(UserWarning, match="out of memory at batch size"):
        p = ef.profile(net, torch.randn(50, 3), GRID, samples=32, batch_size=64, progress=False)
    assert failed and p.meta["batch_size_used"] == 16 and (p.count == 32).all()
