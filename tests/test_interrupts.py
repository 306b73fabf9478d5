"""No lost work, nothing counted twice: signals, out-of-memory retries and checkpoints (issue 11, classes 1-4, 9)."""
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import entropic_fast as ef
from entropic_fast import checkpoint as ckpt
from entropic_fast.errors import InputError, Interrupted
from entropic_fast.estimate import CheckpointMismatch
from entropic_fast.units import UNIT

ROOT = os.path.join(os.path.dirname(__file__), "..")
GRID = ef.sigma_grid(6)
MODEL = ef.analytic.Gaussian(0.5, (3,))
DATA = torch.randn(50, 3, generator=torch.Generator().manual_seed(0))


def plain(x, sigma):
    return MODEL(x, sigma)


@pytest.fixture(autouse=True)
def python_sigint():
    """Python's own SIGINT handler for each test, however pytest was started (a background job of a script
    starts with SIGINT ignored, and its children inherit that); children of the test get the default."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


def run(path, **kw):
    args = dict(samples=40, batch_size=24, checkpoint=path, checkpoint_every=2, progress=False)
    return ef.profile(plain, DATA, GRID, **{**args, **kw})


def same(a, b):
    np.testing.assert_allclose(a.sum, b.sum, rtol=1e-12)
    np.testing.assert_allclose(a.sumsq, b.sumsq, rtol=1e-12)
    np.testing.assert_array_equal(a.count, b.count)


def test_an_interrupt_at_every_line_of_the_loop_counts_nothing_twice(tmp_path):
    """SIGINT sent at each line executed in the loop, the checkpoint and the file code in turn; each
    interrupted run is resumed (which validates its checkpoint's counts against its finished units)
    and must give the uninterrupted profile, with no temporary file left behind.

    Under ``sys.settrace`` every traced line is a point where Python runs signal handlers, far more
    than without tracing. ``signals.py`` itself is left untraced: its few statements between
    installing a handler and entering a section rely on the interpreter's real check points."""
    whole = run(None)
    files = ("estimate.py", "checkpoint.py", "files.py")
    seen = [0]

    def counter(frame, event, arg):
        if not frame.f_code.co_filename.endswith(files):
            return None

        def local(f, e, a):
            if e == "line":
                seen[0] += 1
                if seen[0] == target[0]:
                    os.kill(os.getpid(), signal.SIGINT)
            return local
        return local

    target = [-1]
    sys.settrace(counter)
    try:
        run(tmp_path / "count.ckpt")
    finally:
        sys.settrace(None)
    lines, interrupted = seen[0], 0
    assert lines > 500
    for k in range(1, lines + 1):
        ck = tmp_path / f"k{k}.ckpt"
        seen[0], target[0] = 0, k
        sys.settrace(counter)
        try:
            run(ck)
            (lambda: None)()  # a signal sent at the very last line is handled here, not after the try
        except KeyboardInterrupt:
            interrupted += 1
        finally:
            sys.settrace(None)
        same(run(ck), whole)
    assert interrupted > 0.9 * lines, "almost every point must interrupt the run"
    assert not [f for f in os.listdir(tmp_path) if not f.endswith(".ckpt")], "temporary files left behind"


def _cli(args, env=None):
    cmd = [sys.executable, "-m", "entropic_fast.cli", *args]
    return subprocess.Popen(cmd, cwd=os.path.dirname(__file__), env={**os.environ, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigint_and_sigterm_in_a_real_process_checkpoint_and_resume(tmp_path):
    """The CLI stopped at random moments by SIGINT and SIGTERM: exit 130 / 143, a checkpoint, and a rerun
    that finishes to exactly the uninterrupted profile."""
    data = tmp_path / "data.npy"
    np.save(data, DATA.numpy())
    common = ["profile", "--model", "tests_factory:slow_gaussian", "--data", str(data), "--samples", "64",
              "--grid", "0.002", "80", "12", "--batch-size", "16", "--quiet"]
    rng = random.Random(11)
    whole = None
    for trial, sig in enumerate([signal.SIGINT, signal.SIGTERM, signal.SIGTERM, signal.SIGINT]):
        ck, out, marker = tmp_path / f"{trial}.ckpt", tmp_path / f"{trial}.npz", tmp_path / f"{trial}.started"
        proc = _cli([*common, "--out", str(out), "--checkpoint", str(ck)], {"EF_MARKER": str(marker)})
        t0 = time.monotonic()
        while not marker.exists() and proc.poll() is None and time.monotonic() - t0 < 60:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.3))  # the run takes about 0.5 s after its first call
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 128 + sig, (proc.returncode, err[-2000:])
        assert "Traceback" not in err and ck.exists() and not out.exists()
        rerun = _cli([*common, "--out", str(out), "--checkpoint", str(ck)])
        _, err = rerun.communicate(timeout=120)
        assert rerun.returncode == 0, err[-2000:]
        prof = ef.Profile.load(out)
        if whole is None:
            whole = ef.profile(ef.analytic.Gaussian(1.0, (3,)), DATA, ef.sigma_grid(12), samples=64, progress=False)
        same(prof, whole)


def test_a_signal_the_process_ignores_stays_ignored():
    """A job started with SIGINT ignored (a script's background job) is not stopped by one: the profile
    finishes as if none had come, and SIGINT is still ignored afterwards."""
    calls = [0]

    def net(x, sigma):
        calls[0] += 1
        if calls[0] == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return plain(x, sigma)

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the fixture puts Python's handler back
    got = ef.profile(net, DATA, GRID, samples=40, batch_size=24, progress=False)
    assert calls[0] > 2 and signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    same(got, run(None))


def test_signals_are_held_back_inside_a_critical_section():
    with pytest.raises(Interrupted) as stop:
        with ef.signals.held():
            os.kill(os.getpid(), signal.SIGTERM)
            done = True  # the signal waits for the end of the section
    assert done and stop.value.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL, "the previous handler is restored"


def test_out_of_memory_inside_accumulation_is_retried_from_clean_accumulators(monkeypatch):
    """An OOM raised after the row errors were added (the spectral part allocates later) must not add those
    rows twice on the halved retry: counts stay exact and the spectra still sum to mse (Parseval)."""
    from entropic_fast.kernels import reference

    oom = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    real = reference.bin_power

    def bin_power(power, sigma_index, spectral):
        if power.shape[0] > 40:
            raise oom("CUDA out of memory (simulated, after the row errors were added)")
        return real(power, sigma_index, spectral)

    monkeypatch.setattr(reference, "bin_power", bin_power)
    m = ef.analytic.Gaussian(0.5, (1, 4, 4))
    with pytest.warns(UserWarning, match="out of memory at batch size"):
        p = ef.profile(m, m, GRID, samples=64, batch_size=128, spectral=True, progress=False)
    monkeypatch.setattr(reference, "bin_power", real)
    ref = ef.profile(m, m, GRID, samples=64, batch_size=128, spectral=True, progress=False)
    np.testing.assert_array_equal(p.count, np.full(GRID.size, 64))
    np.testing.assert_allclose(p.sum, ref.sum, rtol=1e-12)
    np.testing.assert_allclose(p.spectra.sum((1, 2, 3)), p.sum / p.count, rtol=1e-6)  # the plain mean's Parseval


class LabelNet(torch.nn.Module):
    def __init__(self, scale):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(scale))

    def forward(self, x, sigma, labels):
        return x * self.scale


@pytest.mark.parametrize("change, field", [
    (dict(denoiser=LabelNet(0.6)), "fingerprints"),                       # same class, other weights
    (dict(denoiser=lambda x, s, y: x * 0.5), "fingerprints"),              # another callable
    (dict(data=torch.randn(50, 3) + 1), "fingerprints"),                   # other data, same shape
    (dict(data=DATA.double()), "data_dtype"),                              # same data, other dtype
    (dict(labels=torch.arange(50) % 3), "fingerprints"),                   # other labels
])
def test_resume_with_another_model_data_or_labels_is_refused(tmp_path, change, field):
    args = dict(denoiser=LabelNet(0.5), data=DATA, sigmas=GRID, samples=40, checkpoint=tmp_path / "ck",
                progress=False, labels=torch.arange(50) % 2)

    def go(a):
        a = dict(a)
        return ef.profile(a.pop("denoiser"), a.pop("data"), **a)

    go(args)
    with pytest.raises(CheckpointMismatch, match=field):
        go({**args, **change})
    go({**args, "denoiser": LabelNet(0.5)})  # an equal model (another object) resumes


def _tamper(path, **changes):
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    for k, v in changes.items():
        if v is None:
            arrays.pop(k)
        else:
            arrays[k] = v(arrays) if callable(v) else v
    with open(path, "wb") as f:
        np.savez(f, **arrays)


@pytest.mark.parametrize("changes, match", [
    (dict(acc=None), r"missing \['acc'\]"),
    (dict(extra=np.zeros(3)), r"unexpected \['extra'\]"),
    (dict(acc=lambda a: a["acc"][:, :3]), "has array 'acc' of float64 \\(4, 3\\)"),
    (dict(acc=lambda a: a["acc"].astype(np.float32)), "has array 'acc' of float32"),
    (dict(finished=lambda a: np.append(a["finished"], 10**9)), "outside this run's share"),
    (dict(finished=lambda a: np.append(a["finished"], a["finished"][:1])), "a work id twice"),
    (dict(finished=lambda a: a["finished"][1:]), "counts .* but its finished units hold"),
    (dict(finished=np.array(["x"])), "1-D integer array"),
    (dict(acc=lambda a: a["acc"] * np.nan), "non-finite"),
    (dict(signature=np.array("[1, 2]")), "no signature record"),
])
def test_checkpoint_arrays_are_validated_against_the_run(tmp_path, changes, match):
    ck = tmp_path / "ck"
    calls = []

    def dies(x, s):
        calls.append(1)
        if len(calls) == 4:
            raise RuntimeError("stop")
        return plain(x, s)

    dies.fingerprint = lambda: "plain gaussian"  # its call list changes as it runs
    with pytest.raises(RuntimeError):
        ef.profile(dies, DATA, GRID, samples=40, batch_size=24, checkpoint=ck, checkpoint_every=1, progress=False)
    _tamper(ck, **changes)
    with pytest.raises(CheckpointMismatch, match=match):
        ef.profile(dies, DATA, GRID, samples=40, batch_size=24, checkpoint=ck, progress=False)


def test_a_checkpoint_in_a_missing_folder_is_refused_before_any_work(tmp_path):
    calls = []

    def counted(x, s):
        calls.append(len(x))
        return x

    with pytest.raises(InputError, match="does not exist"):
        ef.profile(counted, DATA, GRID, samples=8, checkpoint=tmp_path / "no" / "ck", progress=False)
    assert calls == []


def test_non_finite_output_is_reported_early_without_finishing_the_run(tmp_path):
    calls = []

    def bad(x, sigma):
        calls.append(len(x))
        return torch.full_like(x, torch.nan)

    with pytest.raises(InputError, match="not finite at sigma"):
        ef.profile(bad, DATA, GRID, samples=320, batch_size=32, checkpoint=tmp_path / "ck", checkpoint_every=2,
                   progress=False)
    assert len(calls) <= 3, f"ran {len(calls)} batches of {GRID.size * 10} before reporting"


def test_a_huge_sample_count_starts_at_once():
    """Units are generated lazily: samples=1e9 reaches the denoiser without building a list of them."""
    class Reached(Exception):
        pass

    def stop(x, s):
        raise Reached

    t0 = time.monotonic()
    with pytest.raises(Reached):
        ef.profile(stop, DATA, ef.sigma_grid(128), samples=10**9, progress=False)
    assert time.monotonic() - t0 < 5


def test_checkpoint_read_accepts_its_own_writes(tmp_path):
    """The validation itself: an honest checkpoint of a finished run reads back."""
    ck = tmp_path / "ck"
    run(ck)
    with np.load(ck) as z:
        assert "finished" in z.files and z["finished"].size == GRID.size * -(-40 // UNIT)  # 40 rows per sigma
    assert ckpt.VERSION == 4


@pytest.mark.parametrize("when", ["install", "restore"])
def test_a_handler_that_raises_during_the_swap_leaves_the_callers_handlers(monkeypatch, when):
    """Another thread catches a SIGTERM while the library swaps handlers; the handler in place then runs between
    two ``signal.signal`` calls in the main thread and raises (simulated at the second call). Afterwards the
    caller's SIGINT and SIGTERM handlers are back: the library's stayed installed, swallowing the next Ctrl-C."""
    import entropic_fast.signals as sig
    mine = {s: (lambda *a: None) for s in sig.SIGNALS}
    for s, h in mine.items():
        signal.signal(s, h)
    real, calls = signal.signal, []

    def flaky(s, h):
        calls.append(s)
        out = real(s, h)
        going_in = h is sig._handler
        if len(calls) == 1 and going_in == (when == "install"):
            raise RuntimeError("the caller's SIGTERM handler ran mid-swap and raised")
        return out

    monkeypatch.setattr(sig.signal, "signal", flaky)
    try:
        if when == "install":
            with pytest.raises(RuntimeError, match="mid-swap"):
                with sig.deferring():
                    pass
        else:
            with sig.deferring():
                calls.clear()
            pytest.fail("the error raised during the swap was lost")
    except RuntimeError:
        pass
    finally:
        monkeypatch.setattr(sig.signal, "signal", real)
    assert {s: signal.getsignal(s) for s in sig.SIGNALS} == mine and sig._State.previous is None


@pytest.mark.parametrize("at", [3, 6, 9, 12])
def test_an_exception_inside_a_commit_leaves_a_consistent_checkpoint(tmp_path, monkeypatch, at):
    """A KeyboardInterrupt from a signal handler of the user's (SIGALRM, say) is not held like SIGINT: raised in
    the middle of adding the sums (one part added, the rest not), the checkpoint must still resume to the
    uninterrupted result."""
    from entropic_fast import sums
    data = torch.randn(256, 4, generator=torch.Generator().manual_seed(0))
    grid = ef.sigma_grid(6)
    kw = dict(samples=64, batch_size=32, progress=False, spectral=False)
    whole = ef.profile(_smooth_denoiser, data, grid, **kw)
    calls, real = [0], sums.Sums.add_

    def flaky(self, other):
        calls[0] += 1
        if calls[0] == at:
            first = next(iter(self.parts))
            self.parts[first] += other.parts[first]  # half of the parts added
            raise KeyboardInterrupt
        return real(self, other)
    monkeypatch.setattr(sums.Sums, "add_", flaky)
    ck = tmp_path / "ck.npz"
    with pytest.raises((KeyboardInterrupt, ef.Interrupted)):
        ef.profile(_smooth_denoiser, data, grid, **kw, checkpoint=ck, checkpoint_every=1)
    monkeypatch.setattr(sums.Sums, "add_", real)
    again = ef.profile(_smooth_denoiser, data, grid, **kw, checkpoint=ck)
    np.testing.assert_array_equal(again.sum, whole.sum)
    np.testing.assert_array_equal(again.count, whole.count)


def _smooth_denoiser(x, sigma):
    return x / (1 + sigma[:, None] ** 2)


def test_an_interrupt_that_a_writers_clean_up_turns_into_its_error_stays_an_interrupt(tmp_path):
    """Found by benchmarks/signal_audit.py: a KeyboardInterrupt (a user's SIGALRM handler) inside np.savez's
    zipfile left the caller a ValueError ("Can't close the ZIP file while there is an open writing handle"); the
    interrupt is what the caller gets, and the old file stays."""
    from entropic_fast import files

    def fill(f):
        f.write(b"half")
        try:
            raise KeyboardInterrupt
        finally:  # zipfile.close in numpy's finally
            raise ValueError("Can't close the ZIP file while there is an open writing handle on it")

    path = tmp_path / "p.npz"
    path.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        files.write(path, fill)
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["p.npz"]
    with pytest.raises(ValueError, match="a writer's own"):  # an error without an interrupt behind it stays itself
        files.write(path, lambda f: (_ for _ in ()).throw(ValueError("a writer's own")))
