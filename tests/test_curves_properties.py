"""Property tests (hypothesis) for the C++ curve routines: any valid input, no crash, no hang."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from entropic_fast import curves

values = st.one_of(st.floats(0.0, 1e6), st.sampled_from([0.0, 1e-300, 1e-30, 1.0, 1e30, 1e300]))


@st.composite
def curve(draw):
    n = draw(st.integers(2, 48))
    gaps = draw(st.lists(st.floats(1e-3, 2.0), min_size=n - 1, max_size=n - 1))
    x = np.concatenate([[draw(st.floats(-12.0, 5.0))], np.cumsum(gaps)])
    x[1:] += x[0]
    kind = draw(st.sampled_from(["any", "flat", "spiky", "noisy"]))
    if kind == "flat":
        y = np.full(n, draw(values))
    elif kind == "spiky":
        y = np.full(n, draw(st.sampled_from([0.0, 1e-300, 1e-3])))
        y[draw(st.integers(0, n - 1))] = draw(st.sampled_from([1.0, 1e30, 1e300]))
    elif kind == "noisy":
        base = np.exp(-0.5 * (x - x.mean()) ** 2)
        y = base * np.array(draw(st.lists(st.floats(0.0, 3.0), min_size=n, max_size=n)))
    else:
        y = np.array(draw(st.lists(values, min_size=n, max_size=n)))
    return x, y


@settings(max_examples=300, deadline=None, derandomize=True)
@given(curve(), st.integers(2, 40))
def test_cumulative_monotone_and_inversion_strictly_descending(c, K):
    x, y = c
    cum = curves.cumulative(x, y)
    assert cum[0] == 0 and np.all(np.isfinite(cum)) and np.all(np.diff(cum) >= 0)
    total = cum[-1]
    if not total > 0:
        return
    targets = total * (1 - np.arange(K) / (K - 1))
    u = curves.invert(x, y, targets)
    assert u[0] == x[-1] and u[-1] == x[0]
    assert np.all(np.isfinite(u)) and np.all((u >= x[0]) & (u <= x[-1]))
    # strictly descending wherever the targets are resolvable in floating point
    gap = np.diff(targets) < -1e-12 * total
    assert np.all(np.diff(u)[gap] < 0) or K == 2
    back = curves.integral_at(x, y, u)
    # subnormal results carry an absolute precision of about 5e-324 only
    np.testing.assert_allclose(back, targets, rtol=1e-9, atol=1e-9 * total + 1e-321)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(st.floats(-1e300, 1e300), min_size=1, max_size=60),
       st.lists(st.floats(1e-6, 1e6), min_size=60, max_size=60))
def test_isotonic_is_non_decreasing_and_mean_preserving(y, w):
    y = np.array(y)
    w = np.array(w[: len(y)])
    fit = curves.isotonic(y, w)
    assert np.all(np.diff(fit) >= 0)
    scale = np.max(np.abs(y)) * np.sum(w)
    assert abs(np.sum(w * fit) - np.sum(w * y)) <= 1e-9 * scale + 1e-300


def test_found_cases_subnormal_and_huge_flat_curves():
    """Cases hypothesis found: curves of subnormal values (and their mirror, huge ones) keep exact ends."""
    x = np.arange(42.0)
    for value in (5e-324, 1e-310, 1e300):
        y = np.full(42, value)
        total = curves.cumulative(x, y)[-1]
        for K in (2, 18):
            u = curves.invert(x, y, total * (1 - np.arange(K) / (K - 1)))
            assert u[0] == x[-1] and u[-1] == x[0] and np.all(np.diff(u) <= 0)
        if value > 1e-300:
            assert np.all(np.diff(u) < 0)
