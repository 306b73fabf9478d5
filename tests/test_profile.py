import json
import os
import zipfile

import numpy as np
import pytest

import entropic_fast as ef
from entropic_fast.errors import InputError, ProfileFormatError


def from_samples(sigmas, samples, share=(0, 1)):
    """A Profile built from explicit per-sigma sample lists, recorded as holding one share of the units."""
    return ef.Profile(sigmas, [np.sum(x) for x in samples], [np.sum(np.square(x)) for x in samples],
                      [len(x) for x in samples], dim=3,
                      meta={"seed": 1, "samples": 64, "units": {"classes": [list(share)]}})


def test_mse_and_stderr_match_numpy():
    rng = np.random.default_rng(0)
    samples = [rng.gamma(2.0, size=n) for n in (5, 17, 100)]
    p = from_samples([0.1, 1.0, 10.0], samples)
    np.testing.assert_allclose(p.mse, [x.mean() for x in samples], rtol=1e-14)
    np.testing.assert_allclose(p.stderr, [x.std(ddof=1) / np.sqrt(x.size) for x in samples], rtol=1e-12)


def test_merge_adds_accumulators_exactly():
    rng = np.random.default_rng(1)
    a_s = [rng.gamma(2.0, size=9) for _ in range(3)]
    b_s = [rng.gamma(2.0, size=4) for _ in range(3)]
    m = from_samples([0.1, 1.0, 10.0], a_s, (0, 2)).merge(from_samples([0.1, 1.0, 10.0], b_s, (1, 2)))
    whole = from_samples([0.1, 1.0, 10.0], [np.concatenate(p) for p in zip(a_s, b_s)])
    np.testing.assert_allclose(m.mse, whole.mse, rtol=1e-14)
    np.testing.assert_allclose(m.stderr, whole.stderr, rtol=1e-12)
    np.testing.assert_array_equal(m.count, whole.count)


def test_merge_refuses_other_grid():
    a = from_samples([0.1, 1.0], [[1.0, 2.0]] * 2)
    b = from_samples([0.1, 2.0], [[1.0, 2.0]] * 2)
    with pytest.raises(InputError, match="different sigma grids"):
        a.merge(b)


def test_save_load_round_trips_exactly(tmp_path):
    p = from_samples([0.1, 1.0, 10.0], [[1.0, 2.0], [3.0, 4.0, 5.0], [6.0]])
    path = p.save(tmp_path / "p.npz")
    q = ef.Profile.load(path)
    for name in ("sigmas", "sum", "sumsq", "count"):
        np.testing.assert_array_equal(getattr(q, name), getattr(p, name))
    assert q.dim == p.dim and q.meta == p.meta
    assert os.listdir(tmp_path) == ["p.npz"], "no temporary file left behind"


def test_from_curve_is_exact(tmp_path):
    s = ef.sigma_grid(8)
    p = ef.Profile.from_curve(s, s**2, dim=2)
    assert p.exact and np.all(p.stderr == 0)
    np.testing.assert_array_equal(ef.Profile.load(p.save(tmp_path / "c.npz")).mse, s**2)


def test_damaged_and_foreign_files_are_refused(tmp_path):
    p = from_samples([0.1, 1.0], [[1.0, 2.0]] * 2)
    good = p.save(tmp_path / "good.npz")
    data = open(good, "rb").read()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ProfileFormatError, match="cut.npz is not a readable"):
        ef.Profile.load(tmp_path / "cut.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(ProfileFormatError, match="not a readable"):
        ef.Profile.load(tmp_path / "text.npz")
    with zipfile.ZipFile(good) as z:
        arrays = {n[:-4]: np.load(z.open(n)) for n in z.namelist()}
    meta = json.loads(str(arrays["meta"]))
    meta["format_version"] = 99
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(tmp_path / "v99.npz", **arrays)
    with pytest.raises(ProfileFormatError, match="format version 99"):
        ef.Profile.load(tmp_path / "v99.npz")


@pytest.mark.parametrize("kwargs, match", [
    (dict(sigmas=[1.0, 0.5]), "strictly ascending"),
    (dict(sigmas=[-1.0, 0.5]), "finite and > 0"),
    (dict(sum=[1.0]), r"sum must have shape \(2,\)"),
    (dict(dim=0), "dim must be a positive integer"),
])
def test_constructor_validates(kwargs, match):
    args = dict(sigmas=[0.5, 1.0], sum=[1.0, 1.0], sumsq=[1.0, 1.0], count=[1.0, 1.0], dim=1)
    with pytest.raises(InputError, match=match):
        ef.Profile(**{**args, **kwargs})


def _rewrite(src, dst, change):
    """A consistent archive (valid zip, CRCs right) with ``change(members)`` applied to the arrays of ``src``."""
    with zipfile.ZipFile(src) as z:
        members = {n[:-4]: np.load(z.open(n)) for n in z.namelist()}
    change(members)
    np.savez(dst, **members)
    return dst


@pytest.mark.parametrize("change", [
    lambda m: m.__setitem__("mean_sum/npy", m.pop("mean_sum")),  # a flipped bit in an optional member's name
    lambda m: m.__setitem__("sum", m["sum"] * (1 + 1e-12)),  # an array changed, the archive rebuilt around it
    lambda m: m.__setitem__("meta", np.array(str(m["meta"]).replace('"seed": 1', '"seed": 2'))),  # the meta
    lambda m: m.pop("count"),  # a member lost
], ids=["renamed", "array", "meta", "dropped"])
def test_any_damage_behind_a_valid_archive_is_refused_by_the_checksum(tmp_path, change):
    s = np.array([0.1, 1.0])
    spectral = ef.Profile.from_curve(s, [0.4, 0.8], 4, {"seed": 1}, spectra=np.array([0.1, 0.2])[:, None, None, None]
                                     * np.ones((2, 1, 2, 2)),
                                     data_power=np.ones((1, 2, 2)), data_mean=np.full((1, 2, 2), 0.5))
    good = spectral.save(tmp_path / "good.npz")
    bad = _rewrite(good, tmp_path / "bad.npz", change)
    with pytest.raises(ProfileFormatError, match="bad.npz is not a readable .*(checksum|missing)"):
        ef.Profile.load(bad)


def test_a_file_without_a_checksum_loads_with_a_note(tmp_path):
    p = from_samples([0.1, 1.0], [[1.0, 2.0]] * 2)
    old = _rewrite(p.save(tmp_path / "p.npz"), tmp_path / "old.npz", lambda m: m.pop("checksum"))
    with pytest.warns(UserWarning, match="old.npz carries no checksum"):
        q = ef.Profile.load(old)
    np.testing.assert_array_equal(q.sum, p.sum)
    with zipfile.ZipFile(q.save(tmp_path / "again.npz")) as z:
        assert "checksum.npy" in z.namelist()  # saved again, it carries one


def test_an_unsupported_compression_method_is_a_format_error(tmp_path):
    good = from_samples([0.1, 1.0], [[1.0, 2.0]] * 2).save(tmp_path / "good.npz")
    data = bytearray(open(good, "rb").read())
    at = data.find(b"PK\x03\x04")
    data[at + 8:at + 10] = (99).to_bytes(2, "little")  # the first member's method: 99 (AES), which zipfile lacks
    central = data.find(b"PK\x01\x02")
    data[central + 10:central + 12] = (99).to_bytes(2, "little")
    (tmp_path / "m99.npz").write_bytes(bytes(data))
    with pytest.raises(ProfileFormatError, match="m99.npz is not a readable"):
        ef.Profile.load(tmp_path / "m99.npz")


def test_from_curve_spectra_must_sum_to_the_error():
    s = np.array([0.1, 1.0])
    with pytest.raises(InputError, match="Parseval"):
        ef.Profile.from_curve(s, [0.01, 0.5], 4, spectra=np.full((2, 1, 2, 2), 0.1), data_power=np.ones((1, 2, 2)))


@pytest.mark.parametrize("n", [2, 3, 17, 1000])
def test_sums_from_an_estimate_are_the_samples_sums(n):
    """``sums.from_estimate`` (behind ``with_estimate`` and the recorder's profiles) inverts mean and standard error
    to the sums of real samples."""
    from entropic_fast import sums
    x = np.random.default_rng(n).gamma(2.0, size=(n, 5))
    mean, se = x.mean(0), x.std(0, ddof=1) / np.sqrt(n)
    total, sumsq = sums.from_estimate(mean, se, np.full(5, float(n)))
    np.testing.assert_allclose(total, x.sum(0), rtol=1e-12)
    np.testing.assert_allclose(sumsq, (x**2).sum(0), rtol=1e-12)
    assert np.array_equal(sums.from_estimate(mean, se, np.ones(5))[1], mean**2)  # one sample: no spread


# ---- issue 40: behaviour read from a typed provenance; merge rules and the file format in their own modules ----

def test_behaviour_reads_the_typed_provenance():
    s = ef.sigma_grid(6)
    exact = ef.Profile.from_curve(s, s**2, dim=2)
    assert exact.provenance.exact and exact.exact and exact.provenance.adaptive is None
    sampled = from_samples([0.1, 1.0], [[1.0, 2.0]] * 2)
    assert not sampled.provenance.exact and sampled.provenance.samples == 64
    assert dict(sampled.provenance.run)["seed"] == 1 and sampled.provenance.units == {"classes": [[0, 1]]}
    with pytest.raises(InputError, match=r"meta\['exact'\] must be true or false, got 'yes'"):
        ef.Profile(s, s, s**2, np.ones_like(s), dim=1, meta={"exact": "yes"})  # a string would have been truthy
    with pytest.raises(InputError, match=r"meta\['adaptive'\] must be the adaptive plan's record"):
        ef.Profile(s, s, s**2, np.ones_like(s), dim=1, meta={"adaptive": True})
    with pytest.raises(InputError, match=r"meta\['tuned'\] must be ef.tune's record"):
        sampled.with_meta(tuned=[0.1, 1.0])  # once silently ignored by ef.schedule
    assert sampled.with_meta(tuned={"ddim/4/rescaled": {}}).provenance.tuned == {"ddim/4/rescaled": {}}
    with pytest.raises(InputError, match=r"dropped_per_sigma'\] must be 2 whole numbers"):
        from_samples([0.1, 1.0], [[1.0]] * 2).with_meta(dropped_per_sigma=[1])


def test_the_merge_refusals_come_from_the_provenance():
    a = from_samples([0.1, 1.0], [[1.0, 2.0]] * 2, (0, 2))
    b = from_samples([0.1, 1.0], [[1.0, 2.0]] * 2, (1, 2))
    with pytest.raises(InputError, match="cannot merge an adaptive profile"):
        a.merge(b.with_meta(adaptive={"rounds": []}))
    with pytest.raises(InputError, match="different runs: seed 1 and 2"):
        a.merge(b.with_meta(seed=2))
    with pytest.raises(InputError, match="overlapping"):
        a.merge(a)
    both = a.with_meta(dropped=1, dropped_per_sigma=[1, 0]).merge(b.with_meta(dropped=2, dropped_per_sigma=[0, 2]))
    assert both.meta["dropped_per_sigma"] == [1, 2] and both.meta["dropped"] == 3


def test_the_file_module_round_trips_and_checks_what_it_writes(tmp_path):
    from entropic_fast import profile_file
    p = from_samples([0.1, 1.0, 10.0], [[1.0, 2.0], [3.0], [6.0]])
    args = profile_file.read(profile_file.write(str(tmp_path / "p.npz"), p))
    assert args["dim"] == 3 and args["meta"] == p.meta and np.array_equal(args["sum"], p.sum)
    assert set(args) == {"sigmas", "sum", "sumsq", "count", "dim", "meta", "power_count"}  # no optional arrays
    (tmp_path / "x.npz").write_bytes(b"PK not a zip")  # every check of a damaged file is the module's
    with pytest.raises(ProfileFormatError, match="not a readable entropic_fast profile"):
        profile_file.read(str(tmp_path / "x.npz"))


def test_the_part_table_drives_the_layout_the_fields_and_the_file():
    """Issue 40: one table of accumulator parts (``sums.PARTS``); the layout, a profile's fields, the round's
    decision's fields, scaling and the file's keys all follow it."""
    from entropic_fast import control, sums
    acc = sums.Sums(3, "cpu", controls=1, image=(1, 2, 2))
    assert list(acc.shapes()) == [p.name for p in sums.PARTS]  # every part, with controls and an image
    assert list(sums.Sums(3, "cpu").shapes()) == ["acc"]
    host = {k: np.zeros(v) for k, v in acc.shapes().items()}
    host["acc"][sums.COUNT] = 2.0
    host["power_acc"][sums.COUNT] = 5.0
    assert set(sums.fields(host)) == {"sum", "sumsq", "count", *sums.FIELDS}
    assert set(sums.fields(host, plain_only=True)) == {"sum", "sumsq", "count", "control_sum"}
    f = sums.fields(host)
    assert f["power_count"] == 5.0 and f["power_sum"].shape == (1, 2, 2)
    opt = {k: f[k] for k in sums.FIELDS}
    sc = sums.scaled({**opt, "spectral_sum": np.ones((3, 1, 2, 2))}, np.array([1.0, 2.0, 3.0]))
    assert sc["control_sum"] is None and sc["spectral_sum"][:, 0, 0, 0].tolist() == [1.0, 2.0, 3.0]
    arrays, entries = sums.to_file(opt)
    assert "power_count" not in arrays and entries == {"power_count": 5.0}
    assert control.sums_size(1) == acc.shapes()["cv"][0]
