"""Integration and inversion: the C++ extension against the numpy/scipy reference of the tests."""
import numpy as np
import pytest

import entropic_fast as ef
import reference_curves
from entropic_fast import curves

N_CURVES, N_POINTS, STEPS = 200, 128, 32


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    u = np.log(ef.sigma_grid(N_POINTS))
    y = np.exp(-0.5 * (u[None, :] - rng.uniform(-4, 2, (N_CURVES, 1))) ** 2) * rng.uniform(0.5, 2, (N_CURVES, 1))
    return u, y, 1.0 - np.arange(STEPS) / (STEPS - 1)


IMPLS = {"C++ entropic_fast.curves": curves, "numpy/scipy reference (PchipInterpolator + brentq)": reference_curves}


@pytest.mark.benchmark(group=f"curves: integrate + invert, {N_CURVES} curves x {N_POINTS} points x {STEPS} steps")
@pytest.mark.parametrize("impl", list(IMPLS))
def test_integrate_and_invert(benchmark, batch, impl):
    u, y, frac = batch
    mod = IMPLS[impl]

    def run():
        total = mod.cumulative(u, y)[:, -1:]
        return mod.invert(u, y, total * frac)

    got = benchmark(run)
    want = reference_curves.invert(u[:], y[:3], reference_curves.cumulative(u, y[:3])[:, -1:] * frac)
    np.testing.assert_allclose(got[:3], want, atol=1e-9)
