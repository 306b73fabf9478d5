"""The pure-Python twins of the C++ extensions (``entropic_fast.purepy``) against the extensions themselves: the
same bits on odd shapes, extreme scales and special values, the same errors; and the package without its
extensions (as a wheel-less install with no compiler leaves it) warns once and profiles and schedules as with them."""
import subprocess
import sys

import numpy as np
import pytest

from entropic_fast import _curves, _noise, purepy


def _bits(a):
    return np.ascontiguousarray(a, np.float64).view(np.uint64)


def _grid_and_curves(rng, n, m, scale):
    x = np.unique(np.sort(rng.normal(size=n) * 3))
    y = np.abs(rng.normal(size=(m, x.size))) * scale * (rng.random((m, x.size)) > 0.2)
    return x, y


@pytest.mark.parametrize("n", [2, 3, 4, 17, 257])
@pytest.mark.parametrize("m", [1, 3])
@pytest.mark.parametrize("scale", [1e-310, 1.0, 1e300])
def test_curves_twins_give_the_extensions_bits(n, m, scale):
    rng = np.random.default_rng(n * 31 + m)
    x, y = _grid_and_curves(rng, n, m, scale)
    for name in ("slopes", "cumulative"):
        assert np.array_equal(_bits(getattr(purepy, name)(x, y)), _bits(getattr(_curves, name)(x, y))), name
    q = np.concatenate([rng.uniform(x[0], x[-1], size=(m, 6)), np.tile([x[0], x[-1]], (m, 1))], axis=1)
    assert np.array_equal(_bits(purepy.integral_at(x, y, q)), _bits(_curves.integral_at(x, y, q)))
    top = _curves.cumulative(x, y)[:, -1:]
    t = top * np.concatenate([[0.0, 1.0], rng.random(6)])[None]
    assert np.array_equal(_bits(purepy.invert(x, y, t)), _bits(_curves.invert(x, y, t)))
    v, w = rng.normal(size=(m, x.size)), rng.random((m, x.size)) + 0.1
    assert np.array_equal(_bits(purepy.isotonic(v, w)), _bits(_curves.isotonic(v, w)))


def test_exp_and_log_twins_give_the_extensions_bits():
    rng = np.random.default_rng(7)
    special = [0.0, -0.0, 1.0, 0.5, 2.0, 4.0, 0.25, np.sqrt(0.5), -1.0, np.inf, -np.inf, np.nan, 5e-324, 1e-310,
               709.78, 709.79, -745.1, -745.3]
    v = np.concatenate([rng.normal(size=50_000) * 300, rng.uniform(-746, 710, 50_000), special])
    assert np.array_equal(_bits(purepy.exp(v)), _bits(_curves.exp(v)))
    p = np.concatenate([np.exp(rng.uniform(-740, 709, 50_000)), rng.uniform(0, 10, 50_000), special])
    assert np.array_equal(_bits(purepy.log(p)), _bits(_curves.log(p)))


@pytest.mark.parametrize("n", [1, 7, 1797, 2**40 + 3, 2**62 + 1])
def test_data_rows_twin_gives_the_extensions_indices(n):
    rid = np.random.default_rng(n % 1000).integers(0, 2**62, 3000)
    key = 12345678912345
    assert np.array_equal(purepy.rows(key, rid, n), _noise.rows(key, rid, n))


@pytest.mark.parametrize("compiled, call", [
    (_curves, lambda m: m.cumulative(np.array([0.0, 0.0, 1.0]), np.ones((1, 3)))),
    (_curves, lambda m: m.cumulative(np.array([0.0, 1.0]), np.array([[1.0, -1.0]]))),
    (_curves, lambda m: m.slopes(np.array([0.0, np.nan]), np.ones((1, 2)))),
    (_curves, lambda m: m.integral_at(np.array([0.0, 1.0]), np.ones((1, 2)), np.array([[2.0]]))),
    (_curves, lambda m: m.invert(np.array([0.0, 1.0]), np.ones((1, 2)), np.array([[3.0]]))),
    (_curves, lambda m: m.isotonic(np.ones((1, 3)), np.array([[1.0, 0.0, 1.0]]))),
    (_noise, lambda m: m.rows(1, np.zeros(3, np.int64), 0)),
])
def test_twins_refuse_what_the_extensions_refuse_with_their_words(compiled, call):
    words = []
    for module in (compiled, purepy):
        with pytest.raises(ValueError) as e:
            call(module)
        words.append(str(e.value))
    assert words[0] == words[1]


WITHOUT = ("import sys, warnings\n"
           "for n in ('_curves', '_noise', '_stats', '_ideal'): sys.modules['entropic_fast.' + n] = None\n")
RUN = ("import numpy as np, entropic_fast as ef\n"
       "g = np.random.default_rng(1)\n"
       "m = ef.analytic.GMM(g.normal(size=(3, 6)), np.full(3, 0.2))\n"
       "p = ef.profile(m, m, ef.sigma_grid(24), samples=64, progress=False)\n"
       "s = ef.schedule(p, 8, sampler='dpmpp_2m')\n"
       "np.save(sys.argv[1], np.concatenate([p.mse, s]))\n")


def test_the_package_without_its_extensions_warns_once_and_gives_the_same_results(tmp_path):
    out = []
    for name, head in (("with", "import sys\n"), ("without", WITHOUT)):
        path = tmp_path / f"{name}.npy"
        r = subprocess.run([sys.executable, "-W", "always::RuntimeWarning", "-c", head + RUN, str(path)],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        out.append((np.load(path), r.stderr))
    (a, quiet), (b, said) = out
    assert "pure-Python" not in quiet
    assert said.count("pure-Python twin") == 4 and "_curves" in said and "make wheel" in said, said
    np.testing.assert_allclose(b, a, rtol=1e-12, atol=0)  # sums to rounding (the noise and the curves: same bits)
