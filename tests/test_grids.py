import numpy as np
import pytest

from entropic_fast import grids
from entropic_fast.errors import InputError

DESIGN_TANGENT_11 = [80, 3.0535, 1.5171, 0.9737, 0.6851, 0.4989, 0.3632, 0.2553, 0.1635, 0.0807, 0.002]


def test_sigma_grid_is_the_edm_rho_grid():
    s = grids.sigma_grid(5, 0.002, 80.0, 7.0)
    assert s[0] == 0.002 and s[-1] == 80.0 and np.all(np.diff(s) > 0)
    # rho-th roots are equally spaced
    np.testing.assert_allclose(np.diff(np.diff(s ** (1 / 7))), 0, atol=1e-14)


def test_tangent_reproduces_design_table():
    s = grids.tangent(11, 0.002, 80.0, c=0.5)
    assert s.shape == (12,) and s[-1] == 0
    np.testing.assert_allclose(s[:-1], DESIGN_TANGENT_11, rtol=5e-4)


@pytest.mark.parametrize("fn", [grids.karras, grids.exponential, grids.tangent])
@pytest.mark.parametrize("steps", [2, 7, 32])
def test_classic_schedules_are_descending_with_exact_ends(fn, steps):
    s = fn(steps, 0.01, 50.0)
    assert s.shape == (steps + 1,) and s[0] == 50.0 and s[-2] == 0.01 and s[-1] == 0.0
    assert np.all(np.diff(s) < 0)


def test_exponential_is_log_linear():
    s = grids.exponential(6, 0.01, 100.0)[:-1]
    np.testing.assert_allclose(np.diff(np.log(s)), np.log(1e-4) / 5, rtol=1e-12)


def test_karras_equals_reversed_grid():
    np.testing.assert_array_equal(grids.karras(9, 0.1, 10.0, 3.0)[:-1], grids.sigma_grid(9, 0.1, 10.0, 3.0)[::-1])


def test_loglinear_interp_identity_and_refinement():
    s = grids.karras(10)
    np.testing.assert_allclose(grids.loglinear_interp(s, 10), s, rtol=1e-13)
    fine = grids.loglinear_interp(s, 19)
    # every other point of the refined list is an original one, the others are geometric means
    np.testing.assert_allclose(fine[:-1:2], s[:-1], rtol=1e-13)
    np.testing.assert_allclose(fine[1:-1:2], np.sqrt(s[:-2] * s[1:-1]), rtol=1e-13)


@pytest.mark.parametrize("call, match", [
    (lambda: grids.sigma_grid(1), "n must be an integer >= 2"),
    (lambda: grids.karras(8, 1.0, 0.5), "sigma_min < sigma_max"),
    (lambda: grids.tangent(8, c=-1.0), "tangent scale c must be > 0, got -1.0"),
    (lambda: grids.loglinear_interp([1.0, 2.0], 4), "strictly descending"),
    (lambda: grids.exponential(1.5), "steps must be an integer"),
])
def test_bad_input(call, match):
    with pytest.raises(InputError, match=match):
        call()
