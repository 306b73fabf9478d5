"""Hostile and careless input: every case a clear InputError, never a silent change (issue 11, classes 5-8, 10-18)."""
import json
import os
import stat
import subprocess
import sys
import types

import numpy as np
import pytest
import torch

import entropic_fast as ef
from entropic_fast import metrics, samplers
from entropic_fast.adapters import diffusers as dif
from entropic_fast.adapters import edm, flow
from entropic_fast.cli import main
from entropic_fast.errors import InputError, ProfileFormatError

GRID = ef.sigma_grid(8)
GAUSS = ef.analytic.Gaussian(0.5, (3,))


def gmm():
    g = torch.Generator().manual_seed(0)
    return ef.analytic.GMM(torch.randn(5, 2, generator=g, dtype=torch.float64), 0.1)


# ---- class 6: shards are integers


@pytest.mark.parametrize("shard", [(0.5, 2), (0, 2.5), (True, 2), ("0", 2), (0, 2, 1), 3])
def test_shard_must_be_two_integers(shard):
    with pytest.raises(InputError, match="shard"):
        ef.profile(GAUSS, GAUSS, GRID, samples=4, shard=shard, progress=False)


def test_numpy_integers_are_ordinary_shards_and_seeds():
    a = ef.profile(GAUSS, GAUSS, GRID, samples=40, seed=np.int64(3), shard=(np.int64(1), np.int32(2)),
                   batch_size=np.int64(64), progress=False)
    b = ef.profile(GAUSS, GAUSS, GRID, samples=40, seed=3, shard=(1, 2), progress=False)
    np.testing.assert_allclose(a.sum, b.sum, rtol=1e-14)


# ---- class 7: merge checks overlap and identity


def test_merge_refuses_overlap_and_other_runs():
    m = gmm()
    a = ef.profile(m, m, GRID, samples=40, seed=1, shard=(0, 2), progress=False)
    b = ef.profile(m, m, GRID, samples=40, seed=1, shard=(1, 2), progress=False)
    whole = ef.profile(m, m, GRID, samples=40, seed=1, progress=False)
    merged = a.merge(b)
    np.testing.assert_allclose(merged.sum, whole.sum, rtol=1e-12)
    assert merged.meta["units"]["classes"] == [[0, 1]] == whole.meta["units"]["classes"]
    with pytest.raises(InputError, match="overlapping"):
        a.merge(a)
    with pytest.raises(InputError, match="overlapping"):
        merged.merge(a)
    with pytest.raises(InputError, match="overlapping"):  # (0, 2) and (0, 3) share work id 0
        a.merge(ef.profile(m, m, GRID, samples=40, seed=1, shard=(0, 3), progress=False))
    a.merge(ef.profile(m, m, GRID, samples=40, seed=1, shard=(1, 4), progress=False))  # odd ids: disjoint
    with pytest.raises(InputError, match="seed 1 and 2"):
        a.merge(ef.profile(m, m, GRID, samples=40, seed=2, shard=(1, 2), progress=False))
    with pytest.raises(InputError, match="fingerprints"):
        a.merge(ef.profile(ef.analytic.GMM(m.means + 1, 0.1), m, GRID, samples=40, seed=1, shard=(1, 2),
                           progress=False))
    with pytest.raises(InputError, match="samples 40 and 48"):
        a.merge(ef.profile(m, m, GRID, samples=48, seed=1, shard=(1, 2), progress=False))
    with pytest.raises(InputError, match="different sigma grids"):
        a.merge(ef.profile(m, m, ef.sigma_grid(9), samples=40, seed=1, shard=(1, 2), progress=False))
    bare = ef.Profile(GRID, a.sum, a.sumsq, a.count, a.dim)
    with pytest.raises(InputError, match="no record of its work units"):
        bare.merge(b)
    for units, samples in (({"classes": [["a", 2]]}, 40), ({"classes": [[0, 2]]}, None), ({"classes": []}, 40)):
        odd = ef.Profile(GRID, a.sum, a.sumsq, a.count, a.dim, {**a.meta, "units": units, "samples": samples})
        with pytest.raises(InputError, match="malformed"):
            odd.merge(b)


def test_merge_survives_save_and_load(tmp_path):
    m = gmm()
    parts = [ef.profile(m, m, GRID, samples=40, shard=(k, 3), progress=False).save(tmp_path / f"{k}.npz")
             for k in range(3)]
    loaded = [ef.Profile.load(p) for p in parts]
    merged = loaded[0].merge(loaded[1]).merge(loaded[2])
    assert merged.meta["units"]["classes"] == [[0, 1]]
    np.testing.assert_allclose(merged.sum, ef.profile(m, m, GRID, samples=40, progress=False).sum, rtol=1e-12)


# ---- class 8: impossible accumulators


@pytest.mark.parametrize("change, match", [
    (dict(count=[-1.0, 2.0]), r"count must be finite and >= 0, got -1.0 at index \(0,\)"),
    (dict(count=[1.5, 2.0]), "whole numbers"),
    (dict(sum=[np.nan, 1.0]), "sum must be finite"),
    (dict(sumsq=[np.inf, 1.0]), "sumsq must be finite"),
    (dict(sum=[-1.0, 1.0]), "sum must be finite and >= 0"),
    (dict(sum=[4.0, 1.0], sumsq=[1.0, 1.0]), r"sumsq must be >= sum\^2 / count"),
    (dict(count=[0.0, 2.0]), "must be 0 where count is 0"),
    (dict(dim=np.nan), "dim must be a positive integer"),
    (dict(dim="3"), "dim must be a positive integer"),
    (dict(meta=["a"]), "meta must be a dict"),
    (dict(sum=["a", "b"]), "sum must be numbers"),
])
def test_impossible_accumulators_are_refused(change, match):
    args = dict(sigmas=[0.5, 1.0], sum=[2.0, 2.0], sumsq=[4.0, 4.0], count=[2.0, 2.0], dim=1)
    with pytest.raises(InputError, match=match):
        ef.Profile(**{**args, **change})


@pytest.mark.parametrize("spec, power, count, match", [
    (np.full((2, 1, 1, 2), np.nan), np.ones((1, 1, 2)), 1.0, "spectral_sum must be finite"),
    (-np.ones((2, 1, 1, 2)), np.ones((1, 1, 2)), 1.0, "spectral_sum must be finite and >= 0"),
    (np.ones((2, 1, 1, 2)), -np.ones((1, 1, 2)), 1.0, "power_sum must be finite and >= 0"),
    (np.ones((2, 1, 1, 2)), np.ones((1, 1, 2)), np.inf, "power_count must be a finite number > 0"),
    (np.ones((2, 1, 1, 2)), None, 1.0, "power_sum must be given"),
])
def test_impossible_spectra_are_refused(spec, power, count, match):
    with pytest.raises(InputError, match=match):
        ef.Profile([0.5, 1.0], [2.0, 2.0], [4.0, 4.0], [2.0, 2.0], 2, spectral_sum=spec, power_sum=power,
                   power_count=count)


def test_from_curve_refuses_negative_and_nan():
    for bad in ([-1.0, 1.0], [np.nan, 1.0]):
        with pytest.raises(InputError, match="mse must be"):
            ef.Profile.from_curve([0.5, 1.0], bad, 1)


# ---- class 10: file mode and links


def test_save_honours_the_umask_keeps_a_mode_and_follows_links(tmp_path):
    p = ef.Profile.from_curve(GRID, GRID, 1)
    old = os.umask(0o022)
    try:
        p.save(tmp_path / "new.npz")
        assert stat.S_IMODE(os.stat(tmp_path / "new.npz").st_mode) == 0o644
        os.umask(0o077)
        p.save(tmp_path / "private.npz")
        assert stat.S_IMODE(os.stat(tmp_path / "private.npz").st_mode) == 0o600
    finally:
        os.umask(old)
    os.chmod(tmp_path / "new.npz", 0o640)
    p.save(tmp_path / "new.npz")
    assert stat.S_IMODE(os.stat(tmp_path / "new.npz").st_mode) == 0o640, "an existing file keeps its mode"
    os.symlink(tmp_path / "new.npz", tmp_path / "link.npz")
    ef.Profile.from_curve(GRID, 2 * GRID, 1).save(tmp_path / "link.npz")
    assert os.path.islink(tmp_path / "link.npz")
    np.testing.assert_array_equal(ef.Profile.load(tmp_path / "new.npz").mse, 2 * GRID)


# ---- class 11: numpy scalars, NaN sigmas, wrong types and shapes


def test_numpy_scalars_are_ordinary_arguments():
    prof = ef.Profile.from_curve(GRID, GAUSS.mse(GRID), 3)
    a = ef.schedule(prof, np.int64(6), "rescaled", sigma_min=np.float32(0.01), sigma_max=np.float64(40.0))
    b = ef.schedule(prof, 6, "rescaled", sigma_min=float(np.float32(0.01)), sigma_max=40.0)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ef.sigma_grid(np.int64(8), np.float32(0.5), np.float64(2.0), np.int32(7)),
                                  ef.sigma_grid(8, float(np.float32(0.5)), 2.0, 7))
    c = ef.schedule(prof, 6, "rescaled", sigma_min=torch.tensor(0.01), sigma_max=torch.tensor(40.0, dtype=torch.float64))
    np.testing.assert_array_equal(c, b)  # 0-d tensors too (k-diffusion's model.sigma_min)
    for bad in (torch.tensor([0.01]), torch.tensor(True), torch.tensor(1 + 1j)):
        with pytest.raises(InputError, match="sigma_min must be a real number"):
            ef.schedule(prof, 6, "rescaled", sigma_min=bad)


@pytest.mark.parametrize("call, match", [
    (lambda: ef.schedule("x.npz", 8), r"no profile file at 'x.npz'"),
    (lambda: ef.entropic_time(None), "expected a Profile"),
    (lambda: ef.schedule(ef.Profile.from_curve(GRID, GRID, 1), 8.5), "steps must be an integer"),
    (lambda: ef.schedule(ef.Profile.from_curve(GRID, GRID, 1), 8, sigma_min=np.nan), "sigma_min must be finite"),
    (lambda: ef.profile(GAUSS, GAUSS, GRID, samples=2.5), "samples must be an integer"),
    (lambda: ef.profile(GAUSS, GAUSS, GRID, seed=1.5), "seed must be an integer"),
    (lambda: ef.profile(GAUSS, GAUSS, GRID, checkpoint_seconds="x"), "checkpoint_seconds must be a real"),
    (lambda: ef.profile(GAUSS, GAUSS, [0.1, np.nan]), "finite and > 0"),
    (lambda: ef.profile(GAUSS, GAUSS, "abc"), "sigmas must be"),
    (lambda: samplers.ddim(GAUSS, torch.randn(4, 3), [1.0, np.nan, 0.0]), "sigmas must be finite"),
    (lambda: samplers.ddim(GAUSS, torch.randn(4, 3), [np.inf, 1.0, 0.0]), "sigmas must be finite"),
    (lambda: samplers.ddim(lambda x, s: x[:, :1], torch.randn(4, 3), [1.0, 0.5, 0.0]),
     r"denoiser output has shape \(4, 1\) at sigma=1"),
    (lambda: samplers.dpmpp_2m(lambda x, s: x[:, :1], torch.randn(4, 3), [1.0, 0.5, 0.0]), r"shape \(4, 1\)"),
    (lambda: samplers.heun(lambda x, s: x.sum(1), torch.randn(4, 3), [1.0, 0.5, 0.0]), r"shape \(4,\)"),
    (lambda: samplers.ddim(GAUSS, torch.randn(4, 3), [1.0, 0.0], eta="x"), "eta must be a real"),
    (lambda: flow.denoiser(lambda x, t: x[:, :1])(torch.randn(4, 3), torch.ones(4)),
     r"velocity model output has shape \(4, 1\)"),
])
def test_wrong_types_and_shapes_name_the_argument(call, match):
    with pytest.raises(InputError, match=match):
        call()


# ---- class 12: blame the right thing


def test_non_finite_data_is_blamed_not_the_denoiser():
    data = torch.randn(20, 3)
    data[7, 1] = torch.nan
    with pytest.raises(InputError, match=r"data has non-finite values \(first in row 7\)"):
        ef.profile(lambda x, s: x, data, GRID, samples=4, progress=False)
    # the check sums the data first: a sum that overflows (finite rows, huge values) is looked at row by row,
    # and +inf and -inf do not cancel
    huge = torch.full((20, 3), 3e38)
    assert ef.protocol.check_data(huge, None)[0].shape == (1, 3)
    both = torch.randn(20, 3)
    both[3, 0], both[9, 2] = float("inf"), float("-inf")
    with pytest.raises(InputError, match=r"first in row 3"):
        ef.protocol.check_data(both, None)

    class Bad:
        def sample(self, n, generator=None):
            x = torch.randn(n, 3, generator=generator)
            x[-1] = torch.inf
            return x

    with pytest.raises(InputError, match="data.sample returned non-finite values"):
        ef.profile(lambda x, s: x, Bad(), GRID, samples=40, progress=False)


def test_a_sigma_that_overflows_the_input_dtype_is_blamed():
    with pytest.raises(InputError, match=r"sigma=1e\+39 .* beyond the largest float32"):
        ef.profile(lambda x, s: x, torch.randn(5, 3), [1.0, 1e39], samples=4, progress=False)
    with pytest.raises(InputError, match="beyond the largest float16"):
        ef.profile(HalfNet(), torch.randn(5, 3), [1.0, 1e4], samples=4, progress=False)


class HalfNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones((), dtype=torch.float16))

    def forward(self, x, sigma):
        return x * self.w


def test_zero_error_at_tiny_sigmas_is_reported_not_a_crash():
    data = torch.randn(50, 2)
    p = ef.profile(ef.analytic.Gaussian(1.0, (2,)), data, [1e-45, 1e-44, 1e-3, 1.0], samples=64, progress=False)
    assert p.mse[0] == 0 and p.mse[1] == 0
    assert "error exactly 0 at 2 sigma(s)" in p.summary()
    s = ef.schedule(p, 3, "rescaled")
    assert np.all(np.diff(s[:-1]) < 0)
    tiny = ef.Profile(GRID, np.full(8, 1e-300), np.full(8, 1e-300) ** 2 * 4, np.full(8, 4.0), 1)
    ef.schedule(tiny, 4, "rescaled")  # weights stay finite whatever the scale of the curve
    zero = ef.profile(lambda x, s: x, data, [1e-45, 1e-44], samples=4, progress=False)
    with pytest.raises(InputError, match="error is zero at every sigma"):
        ef.schedule(zero, 3)


# ---- class 13: sigma grids


@pytest.mark.parametrize("kwargs, match", [
    (dict(rho=np.inf), "rho must be finite"),
    (dict(rho=0.0), "rho must be > 0"),
    (dict(sigma_min=1.0, sigma_max=1.0 + 1e-15), "not strictly ascending in float64"),
    (dict(n=10**6, sigma_min=1.0, sigma_max=1.0 + 1e-9), "not strictly ascending"),
    (dict(n=2.5), "n must be an integer"),
])
def test_invalid_grids_are_refused(kwargs, match):
    with pytest.raises(InputError, match=match):
        ef.sigma_grid(**kwargs)


def test_tiny_rho_gives_a_valid_grid():
    for rho in (1e-3, 1e-9):
        s = ef.sigma_grid(16, 0.002, 80.0, rho)
        assert np.all(np.isfinite(s)) and np.all(np.diff(s) > 0) and s[0] == 0.002 and s[-1] == 80.0
    # small rho crowds the grid towards sigma_max: 80 r^rho for r > 0 when sigma_min^(1/rho) is negligible
    r = np.linspace(0, 1, 16)[1:-1]
    np.testing.assert_allclose(ef.sigma_grid(16, 0.002, 80.0, 1e-3)[1:-1], 80.0 * r**1e-3, rtol=1e-9)


# ---- class 14: options never silently dropped, clamped or replaced


@pytest.mark.parametrize("call, match", [
    (lambda p: ef.schedule(p, 8, "gaussian-optimal", eigenvalues=[1.0, np.nan]), "eigenvalues must be finite"),
    (lambda p: ef.schedule(p, 8, "gaussian-optimal", eigenvalues=[1.0, -0.5]), "eigenvalues must be >= 0"),
    (lambda p: ef.schedule(p, 8, "tangent", c=0), "tangent scale c must be > 0, got 0"),
    (lambda p: ef.schedule(p, 8, "tangent", c=np.nan), "tangent scale c must be finite"),
    (lambda p: metrics.kl_discrete_1d([0.0, 1.0], [0.0, 1.0], [0.5, 0.3, 0.2]), "one value per atom"),
    (lambda p: metrics.kl_continuous_1d([0.0, 1.0, 2.0], [0.5], lambda x: x, bandwidth=0), "bandwidth must be > 0"),
    (lambda p: metrics.sliced_wasserstein(np.ones((3, 2)), np.ones((3, 2)), projections=0), "projections must be"),
    (lambda p: ef.analytic.GMM(np.zeros((2, 3)), 0.1, chunk=-1), "chunk must be an integer >= 1"),
    (lambda p: ef.analytic.GMM(np.full((2, 3), np.nan), 0.1), "means must be finite"),
    (lambda p: ef.analytic.GMM(np.zeros((2, 0)), 0.1), "non-empty shape"),
    (lambda p: ef.analytic.GMM(np.zeros((2, 3)), [0.1, 0.2, 0.3]), "one value per component"),
    (lambda p: ef.analytic.Gaussian(1.0, (0,)), "shape must be an integer >= 1"),
])
def test_options_are_never_silently_changed(call, match):
    with pytest.raises(InputError, match=match):
        call(ef.Profile.from_curve(GRID, GAUSS.mse(GRID), 3))


class Conditional(torch.nn.Module):
    label_dim = 4

    def forward(self, x, sigma, labels):
        return x


def test_fractional_edm_labels_are_refused_not_truncated():
    den = edm.denoiser(Conditional())
    x = torch.randn(3, 2)
    with pytest.raises(InputError, match=r"fractional values \[2.7"):
        den(x, torch.ones(3), torch.tensor([0.0, 2.7, 1.0]))
    with pytest.raises(InputError, match=r"must be in \[0, 4\), got \[7"):
        den(x, torch.ones(3), torch.tensor([0, 7, 1]))
    den(x, torch.ones(3), torch.tensor([0.0, 3.0, 1.0]))  # whole-valued floats are classes


def test_diffusers_alphas_cumprod_with_a_zero_is_refused():
    class Sched:
        alphas_cumprod = torch.tensor([0.99, 0.5, 0.0])
        config = {}

    with pytest.raises(InputError, match=r"strictly between 0 and 1, got 0.0 at timestep 2"):
        dif.denoiser(lambda x, t: x, Sched())


# ---- class 15: malformed profile files


def _npz(path, **arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def _good_arrays(meta=None):
    return dict(sigmas=np.array([0.5, 1.0]), sum=np.array([2.0, 2.0]), sumsq=np.array([4.0, 4.0]),
                count=np.array([2.0, 2.0]), meta=np.array(json.dumps(meta if meta is not None
                                                                    else {"format_version": 1, "dim": 1})))


@pytest.mark.parametrize("arrays, match", [
    ({**_good_arrays(), "meta": np.array("[1, 2]")}, "meta is a JSON list"),
    ({**_good_arrays(), "meta": np.array("null")}, "meta is a JSON NoneType"),
    (_good_arrays({"format_version": 1}), "meta has no 'dim'"),
    ({**_good_arrays(), "sum": np.array(["a", "b"])}, "array 'sum' holds <U1"),
    ({**_good_arrays(), "meta": np.array("[" * 100000 + "]" * 100000)}, "RecursionError"),
    ({**_good_arrays(), "meta": np.array([1.0, 2.0])}, "not a JSON string"),
    ({k: v for k, v in _good_arrays().items() if k != "count"}, r"arrays \['count'\] are missing"),
    (_good_arrays({"format_version": 1, "dim": "x"}), "dim must be a positive integer"),
    ({**_good_arrays(), "count": np.array([-2.0, 2.0])}, "count must be finite and >= 0"),
])
def test_malformed_profile_files_are_format_errors(tmp_path, arrays, match):
    path = _npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ProfileFormatError, match=match):
        ef.Profile.load(path)


def test_a_npy_file_is_a_format_error_and_numpy_meta_saves(tmp_path):
    np.save(tmp_path / "a.npy", np.ones(3))
    with pytest.raises(ProfileFormatError, match=r"a.npy is not a readable .* \(a .npy file\)"):
        ef.Profile.load(tmp_path / "a.npy")
    p = ef.Profile.from_curve(GRID, GRID, 1, meta={"steps": np.int64(3), "scale": np.float32(0.5),
                                                  "list": np.arange(2)})
    q = ef.Profile.load(p.save(tmp_path / "p.npz"))
    assert q.meta["steps"] == 3 and q.meta["scale"] == 0.5 and q.meta["list"] == [0, 1]


# ---- class 16: the command line


def _run_cli(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def prof_file(tmp_path):
    return str(ef.Profile.from_curve(GRID, GAUSS.mse(GRID), 3).save(tmp_path / "p.npz"))


def test_cli_usage_errors_are_one_line_and_exit_2(tmp_path, capsys, prof_file):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (tmp_path / "text.npy").write_text("not an array")
    np.save(tmp_path / "ok.npy", np.random.default_rng(0).normal(size=(20, 3)).astype(np.float32))
    base = ["profile", "--model", "tests_factory:gaussian", "--out", str(tmp_path / "o.npz"), "--samples", "4"]
    os.mkdir(tmp_path / "ro")
    os.chmod(tmp_path / "ro", 0o500)
    (tmp_path / "file").write_text("x")
    cases = [
        ([*base, "--data", str(tmp_path / "obj.npy")], "not a numeric .npy array"),
        ([*base, "--data", str(tmp_path / "text.npy")], "not a numeric .npy array"),
        ([*base, "--data", str(tmp_path / "ok.npy"), "--grid", "0.002", "nan", "8"], "sigma_max must be finite"),
        ([*base, "--data", str(tmp_path / "ok.npy"), "--grid", "0.002", "80", "2.7"], "--grid N must be an integer"),
        (["profile", "--model", "tests_factory:text", "--data", str(tmp_path / "ok.npy"), "--out",
          str(tmp_path / "o.npz")], "returned a str, not a denoiser"),
        (["profile", "--model", "tests_factory:needs_argument", "--data", str(tmp_path / "ok.npy"), "--out",
          str(tmp_path / "o.npz")], "callable with no arguments"),
        ([*base, "--data", str(tmp_path / "ok.npy"), "--device", "banana"], "device must be a torch device"),
        ([*base, "--data", str(tmp_path / "ok.npy"), "--device", "cuda"], "CUDA is not available"),
        ([*base[:3], "--out", str(tmp_path / "missing" / "o.npz"), "--data", str(tmp_path / "ok.npy")],
         "does not exist"),
        (["demo", "--out", str(tmp_path / "file")], "exists and is not a folder"),
        (["schedule", prof_file, "--steps", "8", "--json", "--format", "csv"], "ask for two formats"),
        (["schedule", str(tmp_path / "none.npz"), "--steps", "8"], "No such file"),
        (["schedule", prof_file, "--steps", "1"], "steps must be an integer >= 2"),
    ]
    if os.geteuid() != 0:  # root writes anywhere
        cases += [(["demo", "--out", str(tmp_path / "ro")], "cannot be written"),
                  ([*base[:3], "--out", str(tmp_path / "ro" / "o.npz"), "--data", str(tmp_path / "ok.npy")],
                   "cannot be written")]
    for args, match in cases:
        code, out, err = _run_cli(args, capsys)
        assert code == 2, (args, code, err)
        assert match in err and "Traceback" not in err and err.count("\n") == 1, (args, err)


def test_cli_checks_the_output_before_any_network_call(tmp_path, capsys):
    np.save(tmp_path / "ok.npy", np.ones((4, 3), np.float32))
    code, _, err = _run_cli(["profile", "--model", "tests_factory:explodes", "--data", str(tmp_path / "ok.npy"),
                             "--out", str(tmp_path / "no" / "o.npz")], capsys)
    assert code == 2 and "does not exist" in err


def test_cli_broken_pipe_and_interrupt_exit_quietly(tmp_path, prof_file):
    cmd = [sys.executable, "-m", "entropic_fast.cli", "schedule", prof_file, "--steps", "2000", "--format", "csv"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.read(10)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    assert "Traceback" not in err and proc.returncode in (0, 141), (proc.returncode, err)


# ---- class 17: batch-size invariance of the fused path, stated exactly


@pytest.mark.parametrize("model", ["gmm", "points"])
def test_fused_mixture_path_is_bit_identical_for_any_batch_size(model):
    g = torch.Generator().manual_seed(1)
    m = ef.analytic.GMM(torch.randn(40, 6, generator=g), 0.05) if model == "gmm" \
        else ef.analytic.PointSet(torch.randn(40, 6, generator=g))
    data = m.sample(100, generator=g).float()
    ps = [ef.profile(m, data, GRID, samples=70, batch_size=b, progress=False) for b in (3, 7, 31, 64, 500)]
    for p in ps[1:]:
        np.testing.assert_array_equal(p.count, ps[0].count)
        np.testing.assert_allclose(p.sum, ps[0].sum, rtol=1e-13)  # the same row errors, added in another order


# ---- class 18: submodules are attributes


def test_submodules_are_reachable_lazily():
    code = ("import sys, entropic_fast as ef; assert 'matplotlib' not in sys.modules; "
            "assert 'entropic_fast.samplers' not in sys.modules; "
            "print(ef.samplers.ddim.__name__, ef.metrics.frechet_distance.__name__, ef.analytic.GMM.__name__, "
            "ef.adapters.__name__, ef.plots.__name__); ef.nonexistent")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.stdout.split() == ["ddim", "frechet_distance", "GMM", "entropic_fast.adapters", "entropic_fast.plots"]
    assert "has no attribute 'nonexistent'" in run.stderr


def test_checksum_matches_an_independent_reference_and_sees_one_bit():
    """Position-weighted sums mod 2^64, recomputed in Python integers; chunk boundaries do not matter."""
    from entropic_fast import fingerprint as fp

    def reference(t):
        raw = t.reshape(-1).view(torch.uint8).numpy().tobytes()
        raw += b"\0" * (-len(raw) % 8)
        words = np.frombuffer(raw, dtype="<u8").tolist()
        out = []
        for odd in fp._ODD:
            total = sum(w * odd * (2 * k + 1) for k, w in enumerate(words)) % (1 << 64)
            out.append(total - (1 << 64) if total >= 1 << 63 else total)
        return tuple(out)

    x = torch.randn(1001, generator=torch.Generator().manual_seed(0))
    for t in (x, x.to(torch.bfloat16), torch.arange(7, dtype=torch.int8), torch.tensor([True, False, True])):
        assert fp.checksum(t) == reference(t.to(torch.uint8) if t.dtype == torch.bool else t)
    old = fp._CHUNK
    try:
        fp._CHUNK, fp._WEIGHTS = 64, {}
        assert fp.checksum(x) == reference(x)
    finally:
        fp._CHUNK, fp._WEIGHTS = old, {}
    y = x.clone()
    y.view(torch.int32)[777] ^= 1  # one bit
    assert fp.checksum(y) != fp.checksum(x)
    assert fp.fingerprint(x)[0] != fp.fingerprint(y)[0]


def test_checksum_of_a_view_that_starts_between_words():
    """``data[1:]`` of float32 rows of even length starts 4 bytes into a word: read from a copy, same sums."""
    from entropic_fast import fingerprint as fp
    x = torch.arange(2 * 1000, dtype=torch.float32).reshape(1000, 2)
    view = x.reshape(-1)[1:1999]  # 1998 floats: a whole number of words, offset by one float
    assert view.storage_offset() * 4 % 8 == 4
    assert fp.checksum(view) == fp.checksum(view.clone())
    p = ef.profile(ef.analytic.Gaussian(1.0, (2,)), x.reshape(-1)[1:1997].reshape(998, 2), GRID[:4],
                   samples=4, progress=False)
    assert p.count.sum() == 16


# ---- issue 39: silent wrong results in the samplers, adapters and closed forms -------------------------------

def _den_nan(x, sigma):
    return x * float("nan")


@pytest.mark.parametrize("name", ["ddim", "ddim-stochastic", "heun", "dpmpp_2m"])
def test_a_sampler_refuses_what_would_return_nan_or_zeros(name):
    from entropic_fast import samplers
    run, s = samplers.SAMPLERS[name], torch.tensor([2.0, 1.0, 0.0])
    with pytest.raises(InputError, match="non-finite"):
        run(_den_nan, torch.randn(4, 3), s, generator=torch.Generator().manual_seed(0))
    with pytest.raises(InputError, match="floating-point"):
        run(lambda x, sg: x * 0.5, torch.ones(4, 3, dtype=torch.int64), s)
    with pytest.raises(InputError, match="real values"):
        run(lambda x, sg: x.to(torch.complex64), torch.randn(4, 3), s)


def test_nan_sigmas_do_not_pass_the_client_conversions():
    from entropic_fast.adapters import diffusers, flow
    with pytest.raises(InputError, match="finite"):
        flow.flow_times([1.0, float("nan"), 0.0])
    with pytest.raises(InputError, match="finite"):
        diffusers.to_diffusers([1.0, float("nan"), 0.0], object())


@pytest.mark.parametrize("t", [[-1, 5], [10.7, 5.0], [1000, 5]])
def test_training_errors_refuses_timesteps_off_the_table(t):
    from entropic_fast.adapters import diffusers

    class Scheduler:
        alphas_cumprod = torch.linspace(0.99, 0.01, 1000)
        config = types.SimpleNamespace(prediction_type="epsilon")
    n = torch.randn(2, 3)
    with pytest.raises(InputError, match="timesteps must be whole numbers in \\[0, 999\\]"):
        diffusers.training_errors(Scheduler(), torch.tensor(t), n, n, n)
    sigma, _ = diffusers.training_errors(Scheduler(), torch.tensor([0, 999]), n, n, n)
    np.testing.assert_allclose(sigma.numpy(), np.sqrt((1 - np.array([0.99, 0.01])) / np.array([0.99, 0.01])),
                               rtol=1e-6)


def test_closed_forms_and_metrics_refuse_nan_and_negative_power():
    from entropic_fast import analytic, metrics
    with pytest.raises(InputError, match="sigmas must be finite"):
        analytic.Gaussian(torch.ones(3)).mse([1.0, float("nan")])
    with pytest.raises(InputError, match="non-finite"):
        metrics.sliced_wasserstein(torch.full((5, 2), float("nan")), torch.randn(5, 2))
    with pytest.raises(InputError, match="amplitude >= 0"):
        analytic.power_law_spectrum((1, 4, 4), amplitude=-1.0)


@pytest.mark.parametrize("seed", [-1, 2**64, 1.5])
def test_a_seed_outside_the_streams_is_refused(seed):
    with pytest.raises(InputError, match="seed must be"):
        ef.profile(lambda x, s: x * 0, torch.randn(64, 4), ef.sigma_grid(8), samples=8, seed=seed, progress=False)


def test_the_cli_refuses_integer_and_disguised_data_files(tmp_path, capsys):
    np.save(tmp_path / "int.npy", np.arange(64 * 4).reshape(64, 4))
    np.savez(tmp_path / "fake.npz", x=np.zeros((4, 4)))
    os.rename(tmp_path / "fake.npz", tmp_path / "fake.npy")
    for name, said in (("int.npy", "x / 127.5 - 1"), ("fake.npy", "posing as .npy")):
        code = main(["profile", "--model", "entropic_fast.digits:denoiser", "--data", str(tmp_path / name), "--out",
                     str(tmp_path / "o.npz"), "--samples", "4", "--quiet"])
        err = capsys.readouterr().err
        assert code != 0 and said in err and "Traceback" not in err


@pytest.mark.parametrize("cast", [torch.complex64, torch.int64])
def test_a_profile_refuses_a_denoiser_output_that_is_not_real_floating_point(cast):
    """Issue 39 (complex denoiser output): the squared error of a complex or integer output is another quantity; a
    profile of it was silently made."""
    with pytest.raises(InputError, match=f"dtype {cast}: a real floating-point tensor"):
        ef.profile(lambda x, s: x.to(cast), torch.randn(8, 2), ef.sigma_grid(4), samples=4, progress=False)
