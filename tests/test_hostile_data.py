"""Issue 33's classes of silent wrong data and tracebacks: dataset readers, profile files and CLI flags under
hostile input. Each test failed on the code before the fix."""
import io
import json
import os
import zipfile

import numpy as np
import pytest
import torch

import entropic_fast as ef
from entropic_fast import data
from entropic_fast.errors import InputError, ProfileFormatError

import PIL.Image as PIL  # noqa: E402  (pillow is a test requirement)


def png(img):
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def folder(tmp_path, files, labels=None):
    root = tmp_path / "ds"
    root.mkdir(parents=True, exist_ok=True)
    for name, raw in files.items():
        (root / name).write_bytes(raw)
    if labels is not None:
        (root / "dataset.json").write_text(json.dumps({"labels": labels}))
    return root


# ---- every image mode Pillow reads: the dataset's range, or refused by name

def test_image_modes_read_in_range_or_refused(tmp_path):
    grey16 = PIL.fromarray(np.array([[0, 65535], [32768, 1000]], dtype=np.uint16))
    white1 = PIL.new("1", (2, 2), 1)
    pal = PIL.new("P", (2, 2))
    pal.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    pal.putpixel((0, 0), 1)
    x16 = data.Images(folder(tmp_path / "a", {"a.png": png(grey16)}), labels=False).rows([0])
    np.testing.assert_allclose(x16[0, 0].numpy(), [[-1.0, 1.0], [32768 / 32767.5 - 1, 1000 / 32767.5 - 1]], atol=1e-6)
    x1 = data.Images(folder(tmp_path / "b", {"a.png": png(white1)}), labels=False).rows([0])
    assert float(x1.min()) == 1.0  # white is +1 (it read as -0.99)
    xp = data.Images(folder(tmp_path / "c", {"a.png": png(pal)}), labels=False).rows([0])
    assert xp.shape == (1, 3, 2, 2) and float(xp[0, :, 0, 0].min()) == 1.0 and float(xp[0, :, 1, 1].max()) == -1.0
    rgba = PIL.new("RGBA", (2, 2))
    with pytest.raises(InputError, match="image mode 'RGBA'"):
        data.Images(folder(tmp_path / "d", {"a.png": png(rgba)}), labels=False)


# ---- a folder edited in place (same names, same sizes) is another dataset

def test_a_file_edited_in_place_changes_the_fingerprint(tmp_path):
    root = folder(tmp_path, {"a.png": png(PIL.new("L", (2, 2), 10))})
    before = data.Images(root, labels=False).fingerprint()
    (root / "a.png").write_bytes(png(PIL.new("L", (2, 2), 200)))  # same size, other pixels
    st = os.stat(root / "a.png")
    os.utime(root / "a.png", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert data.Images(root, labels=False).fingerprint() != before


# ---- labels: fractional, null, short entries, ragged, strings

@pytest.mark.parametrize("table, match", [
    ([["a.png", 1.7]], "integer class or a list of numbers, got 1.7"),
    ([["a.png", None]], "got None"),
    ([["a.png"]], r"must be \[file name, label\], got \['a.png'\]"),
    ([["a.png", "cat"]], "got 'cat'"),
    ({"a.png": 1}, "must be a list of \\[name, label\\] pairs"),
])
def test_dataset_json_labels_are_refused_by_value(tmp_path, table, match):
    root = folder(tmp_path, {"a.png": png(PIL.new("L", (2, 2)))}, labels=table)
    with pytest.raises(InputError, match=match):
        data.Images(root)


def test_ragged_label_vectors_are_refused(tmp_path):
    root = folder(tmp_path, {"a.png": png(PIL.new("L", (2, 2))), "b.png": png(PIL.new("L", (2, 2)))},
                  labels=[["a.png", [0.5, 0.5]], ["b.png", [1.0]]])
    with pytest.raises(InputError, match="all vectors of one length"):
        data.Images(root)


# ---- latents: complex and empty .npy files, damaged zips, dangling links

def test_complex_and_empty_latents_are_refused(tmp_path):
    buf = io.BytesIO()
    np.save(buf, np.ones((4, 2, 2), dtype=np.complex64))
    with pytest.raises(InputError, match="complex64 values; latents must be real"):
        data.Latents(folder(tmp_path / "a", {"a.npy": buf.getvalue()}))
    with pytest.raises(InputError, match="not a numeric .npy array"):
        data.Latents(folder(tmp_path / "b", {"a.npy": b""}))


def test_a_damaged_zip_and_a_dangling_link_are_named(tmp_path):
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w") as z:
        z.writestr("a.png", png(PIL.new("L", (2, 2))))
    b = bytearray(raw.getvalue())
    at = b.rfind(b"PK\x01\x02")  # the central directory entry's signature, broken (the end record stays)
    b[at:at + 4] = b"XXXX"
    (tmp_path / "bad.zip").write_bytes(bytes(b))
    with pytest.raises(InputError, match="bad.zip"):
        data.Images(tmp_path / "bad.zip")
    root = folder(tmp_path, {"a.png": png(PIL.new("L", (2, 2)))})
    os.symlink(tmp_path / "gone.png", root / "b.png")
    with pytest.raises(InputError, match="cannot read b.png"):
        data.Images(root)


# ---- profile files: control sums and format versions that cannot be

def saved_control_profile(tmp_path):
    m = ef.analytic.Gaussian(torch.tensor([0.5, 1.0, 2.0]))
    p = ef.profile(lambda x, s: m(x, s), m.sample(64, torch.Generator().manual_seed(0)), ef.sigma_grid(4),
                   samples=16, control="wiener", progress=False)
    assert p.control_sum is not None
    return p


def rewrite(path, out, **changes):
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays["meta"]))
    meta.update(changes.pop("meta", {}))
    arrays.update(changes)
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(out, **arrays)
    return out


def test_control_sums_and_versions_that_cannot_be_are_refused(tmp_path):
    p = saved_control_profile(tmp_path)
    path = p.save(tmp_path / "p.npz")
    cs = p.control_sum.copy()
    negative = cs.copy()
    negative[1] = -np.abs(negative[1]) - 1.0  # the sum of squares row (one control: rows c, c^2, E c)
    cases = {"negative": dict(control_sum=negative), "rows": dict(control_sum=np.zeros((5, cs.shape[1]))),
             "names": dict(meta={"control": ["wiener", "local"]}), "version": dict(meta={"format_version": True})}
    for what, change in cases.items():
        bad = rewrite(path, tmp_path / f"{what}.npz", **change)
        with pytest.raises(ProfileFormatError):
            ef.Profile.load(bad)
    assert ef.Profile.load(path).control_sum.shape == cs.shape  # the unchanged file still loads


# ---- CLI: flags of the adaptive mode beside --samples

@pytest.mark.parametrize("extra", [["--kind", "foo"], ["--steps", "1"], ["--max-evaluations", "5"]])
def test_adaptive_flags_beside_samples_are_refused(tmp_path, capsys, extra):
    from entropic_fast.cli import main
    np.save(tmp_path / "x.npy", np.zeros((4, 3), np.float32))
    code = main(["profile", "--model", "tests_factory:gaussian", "--data", str(tmp_path / "x.npy"), "--out",
                 str(tmp_path / "p.npz"), "--samples", "8", "--grid", "0.1", "1", "4", "--quiet", *extra])
    err = capsys.readouterr().err
    assert code == 2 and extra[0] in err and "--samples" in err and "Traceback" not in err
    assert not (tmp_path / "p.npz").exists()


def test_the_profile_node_checks_its_output_before_the_run(tmp_path):
    """profile_latents with a folder as its output ran the whole profile, then raised IsADirectoryError."""
    from entropic_fast.comfyui.nodes import profile_latents
    calls = []

    class Model:
        model = type("Base", (), {"apply_model": lambda self, x, t, **k: calls.append(1) or x})()

        def get_model_object(self, name):
            return type("ModelSamplingDiscrete", (), {"sigma_min": 0.03, "sigma_max": 14.6})()

    (tmp_path / "out").mkdir()
    with pytest.raises(InputError, match="is a folder, not a file"):
        profile_latents(Model(), {"samples": torch.zeros(4, 1, 2, 2)}, str(tmp_path / "out"), samples=4, points=8)
    assert not calls


def test_profile_load_does_not_hang_on_a_fifo_or_allocate_a_claimed_header(tmp_path):
    fifo = tmp_path / "p.npz"
    os.mkfifo(fifo)
    with pytest.raises(ProfileFormatError, match="not a regular file"):
        ef.Profile.load(fifo)  # hung
    big = tmp_path / "big.npy"
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (4000000000,), }"
    header += " " * (63 - (10 + len(header)) % 64) + "\n"
    big.write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode())
    with pytest.raises(ProfileFormatError, match=r"\(a .npy file\)"):
        ef.Profile.load(big)  # MemoryError (32 GB)
    (tmp_path / "text.npz").write_text("not a profile")
    with pytest.raises(ProfileFormatError, match="not an .npz archive"):
        ef.Profile.load(tmp_path / "text.npz")


@pytest.mark.parametrize("call, match", [
    (lambda m, d, g: ef.profile(m, d, g, tolerance=0.1, kind=None, progress=False), "kind must be a schedule kind"),
    (lambda m, d, g: ef.profile(m, d, g, tolerance=0.1, kind=5, progress=False), "got 5"),
    (lambda m, d, g: ef.profile(m, d, g, tolerance=0.1, kind=["rescaled", 5], progress=False), "got 5"),
    (lambda m, d, g: ef.Profile.from_curve(g, "abc", 3), "mse must be numbers"),
])
def test_plain_errors_from_deep_inside_are_input_errors(call, match):
    m = ef.analytic.Gaussian(1.0, (3,))
    with pytest.raises(InputError, match=match):
        call(m, m.sample(20, torch.Generator().manual_seed(0)), ef.sigma_grid(8))


def test_a_raised_budget_goes_on_from_the_checkpoint(tmp_path):
    """The budget warning says to raise max_evaluations to go on; the rerun with the same checkpoint raised
    CheckpointMismatch. A lowered budget, or any other change, is still refused."""
    from entropic_fast.checkpoint import CheckpointMismatch
    m = ef.analytic.GMM(torch.randn(6, 2, generator=torch.Generator().manual_seed(0)), 0.05)
    kw = dict(tolerance=0.002, steps=8, control=None, progress=False, checkpoint=tmp_path / "c.ckpt")
    grid = ef.sigma_grid(8)
    with pytest.warns(UserWarning, match="max_evaluations=1024"):
        small = ef.profile(m, m, grid, max_evaluations=1024, **kw)
    assert (tmp_path / "c.ckpt").exists()
    with pytest.warns(UserWarning, match="max_evaluations=4096"):
        more = ef.profile(m, m, grid, max_evaluations=4096, **kw)
    assert more.meta["evaluations"] > small.meta["evaluations"] and np.all(more.count >= small.count)
    with pytest.raises(CheckpointMismatch, match="max_evaluations"):
        ef.profile(m, m, grid, max_evaluations=1024, **kw)


def test_control_variates_refuse_rows_whose_rounding_swallows_the_noise():
    """At 1e18 the rows cannot carry noise of sigma 0.01 .. 80, so a control's known mean no longer holds: the
    controlled estimates were finite but 8 to 80 standard errors from the plain one."""
    x = torch.randn(200, 6, generator=torch.Generator().manual_seed(0)) * 1e18
    grid = ef.sigma_grid(6, 0.01, 80.0)
    with pytest.raises(InputError, match=r"rows reach 4.\d+e\+18, where torch.float32 resolves .* grid from sigma"):
        ef.profile(lambda v, s: v * 0.5, x, grid, samples=32, control="wiener", progress=False)
    auto = ef.profile(lambda v, s: v * 0.5, x, grid, samples=32, control="auto", progress=False)
    assert auto.control_sum is None  # auto uses them only where they hold
    scaled = ef.profile(lambda v, s: v * 0.5, x, grid * 1e18, samples=32, control="auto", progress=False)
    assert scaled.control_sum is not None  # the same rows with a grid at their scale keep them


def test_a_control_of_another_dimension_is_named():
    from entropic_fast import control as cv
    wrong = cv.Wiener.of_rows(torch.randn(50, 5, generator=torch.Generator().manual_seed(0)))
    with pytest.raises(InputError, match=r"control 'wiener' does not fit rows of shape \(6,\)"):
        ef.profile(lambda v, s: v, torch.randn(20, 6), ef.sigma_grid(4), samples=8, control=[wrong], progress=False)


def test_control_sums_do_not_depend_on_the_batch_size():
    """With a denoiser whose rows do not depend on their batch, the control sums of batch 10 and 64 agree to
    float64 rounding (they moved by 3e-6, the controlled mse by 2e-9, through float32 products)."""
    from entropic_fast import digits
    x, _ = digits.load("train")
    grid = ef.sigma_grid(8)

    def net(v, s):
        return v / (1 + s.view(-1, 1, 1, 1) ** 2)
    a, b = (ef.profile(net, x, grid, samples=64, batch_size=bs, control="both", progress=False) for bs in (10, 64))
    np.testing.assert_allclose(a.control_sum, b.control_sum, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(a.mse, b.mse, rtol=1e-11)  # seven regression coefficients: 1e-16 moves it 1e-12


@pytest.mark.parametrize("odd", [{"adaptive": {"rounds": [1]}}, {"adaptive": {"rounds": "x", "targets": 5}},
                                 {"adaptive": {"rounds": [{"band": 0.1}], "level": "high"}}])
def test_info_reads_a_profile_whose_meta_has_odd_types(tmp_path, capsys, odd):
    from entropic_fast.cli import main
    g = ef.sigma_grid(4)
    path = tmp_path / "p.npz"
    ef.Profile(g, g, g * g * 2, np.full(4, 2.0), 1, meta=odd).save(path)
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr()
    assert "a record this library did not write" in out.out and "Traceback" not in out.err


def test_adaptive_profiles_say_why_they_do_not_merge():
    m = ef.analytic.Gaussian(1.0, (3,))
    a = ef.profile(m, m, ef.sigma_grid(8), tolerance=0.2, control=None, progress=False)
    b = ef.profile(m, m, ef.sigma_grid(8), samples=64, control=None, progress=False, shard=(1, 2))
    for x, y in ((a, a), (a, b), (b, a)):
        with pytest.raises(InputError, match="cannot merge an adaptive profile"):
            x.merge(y)  # "the profile's record of its work units is malformed"


@pytest.mark.parametrize("value", [None, 3, 1.5, [1, 2], {"a": 1}, True, np.array([1, 2]), torch.tensor(3)])
def test_arguments_of_the_wrong_type_are_input_errors(tmp_path, value):
    """A class of plain TypeError / ValueError / OverflowError from deep inside: paths, kinds, flags and
    tensors given something else."""
    g = ef.sigma_grid(8)
    m = ef.analytic.Gaussian(1.0, (3,))
    prof = ef.profile(m, m, g, samples=8, progress=False)
    calls = [lambda: ef.schedule_band(prof, 8, kind=value),
             lambda: ef.entropic_time(prof, kind=value), lambda: ef.Profile.load(value), lambda: prof.save(value),
             lambda: ef.profile(m, m, g, samples=4, spectral=value, progress=False)]
    if value is not None:  # checkpoint=None is no checkpoint, kind=None the sampler's best kind
        calls.append(lambda: ef.profile(m, m, g, samples=4, checkpoint=value, progress=False))
        calls.append(lambda: ef.schedule(prof, 8, kind=value))
        calls.append(lambda: ef.schedule(prof, 8, sampler=value))
    if not isinstance(value, (list, np.ndarray, torch.Tensor, int, float)):
        calls += [lambda: ef.analytic.Gaussian(value, (3,)), lambda: ef.analytic.PointSet(value)]
    for call in calls:
        with pytest.raises(InputError):
            call()
    with pytest.raises(InputError, match="dim must be a positive integer"):
        ef.Profile.from_curve(g, g, float("inf"))


@pytest.mark.parametrize("make", ["null label", "short entry", "empty npy", "damaged zip"])
def test_the_cli_names_bad_datasets_without_a_traceback(tmp_path, capsys, make):
    from entropic_fast.cli import main
    if make in ("null label", "short entry"):
        table = [["a.png", None]] if make == "null label" else [["a.png"]]
        path = folder(tmp_path, {"a.png": png(PIL.new("L", (2, 2)))}, labels=table)
    elif make == "empty npy":
        path = folder(tmp_path, {"a.npy": b""})
    else:
        raw = io.BytesIO()
        with zipfile.ZipFile(raw, "w") as z:
            z.writestr("a.png", png(PIL.new("L", (2, 2))))
        b = bytearray(raw.getvalue())
        at = b.rfind(b"PK\x01\x02")
        b[at:at + 4] = b"XXXX"
        path = tmp_path / "d.zip"
        path.write_bytes(bytes(b))
    code = main(["profile", "--model", "tests_factory:gaussian", "--data", str(path), "--out",
                 str(tmp_path / "p.npz"), "--samples", "4", "--grid", "0.1", "1", "4", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and str(path.name) in err, err


def test_whole_float_classes_are_classes(tmp_path):
    root = folder(tmp_path, {"a.png": png(PIL.new("L", (2, 2))), "b.png": png(PIL.new("L", (2, 2)))},
                  labels=[["a.png", 3.0], ["b.png", 1]])
    assert data.Images(root).labels.tolist() == [3, 1]
