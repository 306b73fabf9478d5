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
