"""Each Triton kernel against its torch twin (kernels/reference.py) under TRITON_INTERPRET=1."""
import math

import numpy as np
import pytest
import torch

import entropic_fast as ef
from entropic_fast.errors import InputError
from entropic_fast.kernels import ideal, launchers, noise, reference, stats

TOL = {torch.float32: 1e-6, torch.bfloat16: 1e-2, torch.float64: 1e-6}


def rand(*shape, dtype=torch.float32, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)


# ---------------------------------------------------------------- noise


@pytest.mark.parametrize("rows, dim", [(5, 10007), (3, 16389), (40, 1031)])
def test_cpu_noise_split_over_threads_is_the_same(rows, dim):
    """Threads take flat element ranges that start mid-row and mid-block (dim not a multiple of 4): the same bits as
    one thread and as the twin."""
    from entropic_fast import _noise
    rid = np.arange(rows, dtype=np.int64) * 7 + 2**35
    one = _noise.normal(99, rid, dim, 1)
    for threads in (2, 3):
        np.testing.assert_array_equal(_noise.normal(99, rid, dim, threads), one)
    np.testing.assert_array_equal(one, reference.noise(99, torch.from_numpy(rid), dim).numpy())
    x0, s = np.random.default_rng(0).standard_normal((rows, dim)), np.linspace(0.1, 3, rows)
    np.testing.assert_array_equal(_noise.perturb(99, rid, x0, s, 3), _noise.perturb(99, rid, x0, s, 1))


@pytest.mark.parametrize("key, counters, expected", [  # Random123 known-answer vectors, Philox4x32-10
    (0, (0, 0, 0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    (2**64 - 1, (2**32 - 1,) * 4, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (0x299F31D0A4093822, (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
])
def test_philox_twin_known_answers(key, counters, expected):
    out = reference.philox(key, *(torch.tensor([c]) for c in counters))
    assert tuple(int(w) for w in out) == expected


def test_twin_mulhilo_matches_python_integers():
    from entropic_fast.kernels.reference import PHILOX_A, PHILOX_B, _mulhilo
    b = torch.tensor([0, 1, 2**31 - 1, 2**31, 2**32 - 1, 0x9E3779B9, 123456789])
    for a in (PHILOX_A, PHILOX_B):
        hi, lo = _mulhilo(a, b)
        assert hi.tolist() == [(a * v) >> 32 for v in b.tolist()]
        assert lo.tolist() == [(a * v) & 0xFFFFFFFF for v in b.tolist()]


def _exact_normal(seed, rid, dim):
    """Element j of a row from Philox block j // 4: words (0, 1) or (2, 3) by (j % 4) // 2, cos or sin by j % 2;
    the Box-Muller transform of the twin's float32 uniforms in float64: the truth both float32 paths round."""
    j, r = torch.arange(dim).repeat(len(rid)), rid.repeat_interleave(dim)
    words = torch.stack(reference.philox(seed, j // 4, r & reference.MASK32, r >> 32, torch.zeros_like(j)))
    first = 2 * ((j % 4) // 2)
    u1 = torch.clamp_min(reference._uniform(words.gather(0, first[None])[0]), 1.0e-7).double()
    theta = (torch.tensor(6.283185307179586, dtype=torch.float32) * reference._uniform(
        words.gather(0, first[None] + 1)[0])).double()
    trig = torch.where(j % 2 == 0, torch.cos(theta), torch.sin(theta))
    return (torch.sqrt(-2.0 * torch.log(u1)) * trig).reshape(-1, dim)


def _ulps(got, truth):
    """Error in float32 ulps of max(1, |truth|) (near a zero of cos the error is absolute)."""
    return ((got.double() - truth).abs() / (torch.finfo(torch.float32).eps * truth.abs().clamp_min(1.0))).max().item()


@pytest.mark.parametrize("rows, dim", [(1, 1), (3, 7), (40, 3000), (2, 70000)])
def test_cpu_noise_is_bit_for_bit_the_twin(rows, dim):
    """The C++ noise equals the oracle exactly, for row ids above 2^32 too; and both round the float64 transform
    of the same uniforms to within 2.5 float32 ulps (Cephes' log, sin and cos)."""
    from entropic_fast.kernels import cpu
    rid = torch.arange(rows, dtype=torch.int64) * 1_000_003 + (5 << 32)
    for seed in (0, 2**63 - 25):
        got = cpu.noise(seed, rid, dim)
        assert torch.equal(got, reference.noise(seed, rid, dim))
        assert _ulps(got, _exact_normal(seed, rid, dim)) <= 2.5


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("rows, shape", [(1, (1,)), (7, (2, 5, 7)), (3, (1030,)), (2, (70001,))])
def test_cpu_perturb_is_bit_for_bit_the_twin(rows, shape, dtype):
    """``x0 + sigma n`` in one C++ pass equals the twin's ``add_noise`` of its own noise exactly."""
    from entropic_fast.kernels import cpu
    x0, sigma = rand(rows, *shape, dtype=dtype), torch.logspace(-2, 1.5, rows, dtype=dtype)
    rid = torch.arange(rows, dtype=torch.int64) * 977 + 2**33
    got = cpu.perturb(x0, sigma, 2**40 + 3, rid)
    assert got.dtype == dtype and torch.equal(got, reference.perturb(x0, sigma, 2**40 + 3, rid))


@pytest.mark.parametrize("key, counters, expected", [  # Random123 known-answer vectors, Philox4x32-10
    (0, (0, 0, 0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    (0xFFFFFFFFFFFFFFFF, (0xFFFFFFFF,) * 4, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (0x299F31D0A4093822, (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
])
def test_cpp_philox_known_answers(key, counters, expected):
    from entropic_fast import _noise
    assert _noise.philox(key, *counters) == expected


def test_twin_noise_is_standard_normal_and_row_keyed():
    n = reference.noise(7, torch.arange(400), 500)
    assert abs(n.mean().item()) < 0.01 and abs(n.std().item() - 1) < 0.01
    # the four normals of one Philox block (two Box-Muller pairs sharing their radii) are independent: no
    # correlation between neighbours, of the values or of their squares (se 0.0045); fourth moment 3 (se 0.022)
    lanes = n.double().reshape(-1, 4)
    for i, j in ((0, 1), (1, 2), (2, 3), (0, 2)):
        assert abs(torch.corrcoef(lanes[:, [i, j]].T)[0, 1].item()) < 0.015
        assert abs(torch.corrcoef(lanes[:, [i, j]].T.square())[0, 1].item()) < 0.015
    assert abs(n.double().pow(4).mean().item() - 3) < 0.07
    # a row's noise depends on its id only, not on the other rows of the batch
    again = reference.noise(7, torch.tensor([399, 3]), 500)
    torch.testing.assert_close(again, n[[399, 3]], rtol=0, atol=0)
    assert not torch.equal(reference.noise(8, torch.tensor([3]), 500), n[[3]])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("rows, shape", [(1, (3,)), (7, (2, 5, 7)), (33, (1, 17, 19)), (2, (3, 29, 31))])
def test_perturb_matches_twin(rows, shape, dtype):
    """In the interpreter; the last shape spans three blocks of 1024, the last partial and not a multiple of 4."""
    x0 = rand(rows, *shape, dtype=dtype)
    sigma = torch.logspace(-2, 1.5, rows)
    rid = torch.arange(rows, dtype=torch.int64) * 977 + 2**33
    got = noise.perturb(x0, sigma, 2**40 + 3, rid)
    want = reference.perturb(x0, sigma, 2**40 + 3, rid)
    assert got.dtype == dtype
    torch.testing.assert_close(got.double(), want.double(), rtol=TOL[dtype], atol=TOL[dtype] * 30)


# ---------------------------------------------------------------- error statistics


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("rows, shape", [(1, (5,)), (9, (3, 7, 5)), (20, (1, 13, 11)), (3, (3, 40, 41)), (2, (70001,))])
def test_accumulate_error_matches_twin(rows, shape, dtype):
    d, x0 = rand(rows, *shape, dtype=dtype), rand(rows, *shape, dtype=dtype, seed=1)
    idx = torch.arange(rows) % 3
    got, want = torch.zeros(4, 3, dtype=torch.float64), torch.zeros(4, 3, dtype=torch.float64)
    stats.accumulate_error(d, x0, idx, got)
    reference.accumulate_error(d, x0, idx, want)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=0)
    assert got[2].sum() == rows and got[3].sum() == 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("rows, shape", [(1, (1,)), (7, (3,)), (33, (1, 17, 19)), (3, (70001,))])
def test_cpu_accumulate_matches_twin(rows, shape, dtype):
    """The C++ accumulation of the CPU path against the twin, non-finite rows included."""
    from entropic_fast.kernels import cpu
    d, x0 = rand(rows, *shape, dtype=dtype), rand(rows, *shape, dtype=dtype, seed=1)
    if rows > 5:
        d.view(rows, -1)[2, 0], d.view(rows, -1)[5, -1] = float("nan"), float("-inf")
    idx = torch.arange(rows) % 3
    got, want = torch.full((4, 3), 0.5, dtype=torch.float64), torch.full((4, 3), 0.5, dtype=torch.float64)
    cpu.accumulate_error(d, x0, idx, got)
    reference.accumulate_error(d, x0, idx, want)
    torch.testing.assert_close(got, want, rtol=1e-6 if dtype == torch.float32 else 1e-13, atol=0)
    with pytest.raises(ValueError, match="sigma_index 3 out of range"):
        cpu.accumulate_error(d, x0, torch.full((rows,), 3), got)


@pytest.mark.parametrize("dim", [4, 9000])  # 9000: rows split in chunks, the bad value in the last
def test_non_finite_rows_are_counted_not_summed(dim):
    d, x0 = rand(6, dim), rand(6, dim, seed=1)
    d[2, dim - 3], d[4, dim - 1] = float("nan"), float("inf")
    idx = torch.tensor([0, 0, 1, 1, 2, 2])
    for fn in (stats.accumulate_error, reference.accumulate_error):
        acc = torch.zeros(4, 3, dtype=torch.float64)
        fn(d, x0, idx, acc)
        assert acc[3].tolist() == [0, 1, 1] and acc[2].tolist() == [2, 1, 1] and torch.isfinite(acc).all()


@pytest.mark.parametrize("rows, C, H, W", [(1, 1, 5, 7), (5, 3, 9, 11), (4, 2, 16, 16), (3, 1, 17, 3), (2, 2, 32, 31),
                                          (2, 1, 33, 20), (2, 4, 64, 64), (2, 1, 512, 512)])
def test_spectrum_matches_twin_and_parseval(rows, C, H, W):
    """Every image size up to 512x512: the in-kernel DFT up to a side of 32, torch.fft plus the binning
    kernel above (its shared memory and registers are proven by ``kernels.audit``)."""
    d, x0 = rand(rows, C, H, W), rand(rows, C, H, W, seed=1)
    idx = torch.arange(rows) % 2
    got = [torch.zeros(4, 2, dtype=torch.float64), torch.zeros(2, C, H, W, dtype=torch.float64)]
    want = [torch.zeros(4, 2, dtype=torch.float64), torch.zeros(2, C, H, W, dtype=torch.float64)]
    stats.accumulate_error(d, x0, idx, *got)
    reference.accumulate_error(d, x0, idx, *want)
    torch.testing.assert_close(got[1], want[1], rtol=1e-5, atol=1e-5 * want[1].max().item())
    torch.testing.assert_close(got[1].sum((1, 2, 3)), got[0][0], rtol=1e-6, atol=0)  # Parseval


def test_spectrum_fallback_above_the_dft_tile(monkeypatch):
    monkeypatch.setattr(stats, "MAX_DFT_SIDE", 8)  # force the torch.fft + binning path on a small image
    d, x0 = rand(3, 2, 9, 5), rand(3, 2, 9, 5, seed=1)
    idx = torch.tensor([1, 0, 1])
    got, want = torch.zeros(2, 2, 9, 5, dtype=torch.float64), torch.zeros(2, 2, 9, 5, dtype=torch.float64)
    acc = torch.zeros(4, 2, dtype=torch.float64)
    stats.accumulate_error(d, x0, idx, acc, got)
    reference.accumulate_error(d, x0, idx, torch.zeros(4, 2, dtype=torch.float64), want)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got.sum((1, 2, 3)), acc[0], rtol=1e-6, atol=0)


@pytest.mark.parametrize("rows, size", [(1, 3), (7, 1030)])
def test_bin_power_matches_twin(rows, size):
    p = rand(rows, size).abs()
    idx = torch.arange(rows) % 2
    got, want = torch.zeros(2, size, dtype=torch.float64), torch.zeros(2, size, dtype=torch.float64)
    stats.bin_power(p, idx, got)
    reference.bin_power(p, idx, want)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=0)


# ---------------------------------------------------------------- fused ideal denoiser


@pytest.mark.parametrize("rows, K, dim", [(1, 1, 3), (17, 5, 20), (33, 70, 37)])
@pytest.mark.parametrize("point_set", [True, False])
def test_ideal_error_matches_twin(rows, K, dim, point_set):
    g = torch.Generator().manual_seed(rows + K)
    means = torch.randn(K, dim, generator=g)
    var = torch.zeros(K) if point_set else torch.rand(K, generator=g) * 0.2
    logw = torch.log_softmax(torch.randn(K, generator=g), 0)
    x0 = means[torch.randint(K, (rows,), generator=g)] if point_set else torch.randn(rows, dim, generator=g)
    sigma = torch.logspace(-1.5, 1.5, rows)
    rid, idx = torch.arange(rows) * 5 + 1, torch.arange(rows) % 4
    got, want = torch.zeros(4, 4, dtype=torch.float64), torch.zeros(4, 4, dtype=torch.float64)
    ideal.ideal_error(means, var, logw, x0, sigma, 11, rid, idx, got)
    reference.ideal_error(means.double(), var.double(), logw.double(), x0.double(), sigma.double(), 11, rid, idx,
                          want)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize("rows, K, dim", [(1, 1, 3), (17, 5, 8), (33, 70, 37)])
@pytest.mark.parametrize("point_set", [True, False])
def test_cpu_ideal_error_matches_twin(rows, K, dim, point_set):
    """The C++ row errors (fixed order, Cephes exp / log) against the float64 twin (BLAS, torch's exp / log);
    dim 3 and 8 draw importance-sampled rows, whose weights come from the C++ too."""
    from entropic_fast.kernels import cpu as cpu_path
    g = torch.Generator().manual_seed(rows + K)
    means = torch.randn(K, dim, generator=g, dtype=torch.float64)
    var = torch.zeros(K, dtype=torch.float64) if point_set else torch.rand(K, generator=g, dtype=torch.float64) * 0.2
    logw = torch.log_softmax(torch.randn(K, generator=g, dtype=torch.float64), 0)
    x0 = means[torch.randint(K, (rows,), generator=g)] if point_set else torch.randn(rows, dim, generator=g,
                                                                                     dtype=torch.float64)
    sigma = torch.logspace(-1.5, 1.5, rows, dtype=torch.float64)
    rid, idx = torch.arange(rows) * 5 + 1, torch.arange(rows)  # one column per row: the row errors themselves
    got, want = torch.zeros(4, rows, dtype=torch.float64), torch.zeros(4, rows, dtype=torch.float64)
    cpu_path.ideal_error(means, var, logw, x0, sigma, 11, rid, idx, got)
    reference.ideal_error(means, var, logw, x0, sigma, 11, rid, idx, want)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


def test_cephes_exp_and_log_against_libm():
    """The portable exp and log (Cephes: the same bits on every CPU) within 2 ulps of libm, specials exact."""
    import math
    from entropic_fast import curves
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.rand(20000, generator=g, dtype=torch.float64) * 1440 - 740,
                   torch.rand(20000, generator=g, dtype=torch.float64) * 2 - 1]).numpy()
    got = curves.exp(x)
    want = np.array([math.exp(v) for v in x])
    normal = want > 2.3e-308
    assert (np.abs(got - want)[normal] <= 2 * np.spacing(want[normal])).all()
    y = np.exp(x[:20000] * 0.9)
    got = curves.log(y)
    want = np.array([math.log(v) for v in y])
    assert (np.abs(got - want) <= 2 * np.spacing(np.abs(want))).all()
    specials = np.array([0.0, -1.0, np.inf, np.nan, 1.0])
    np.testing.assert_array_equal(curves.log(specials), [-np.inf, np.nan, np.inf, np.nan, 0.0])
    np.testing.assert_array_equal(curves.exp(np.array([-np.inf, np.inf, np.nan, 0.0, 710.0, -746.0])),
                                  [0.0, np.inf, np.nan, 1.0, np.inf, 0.0])


# ---------------------------------------------------------------- dispatch and end to end


def test_dispatch():
    from entropic_fast.kernels import cpu as cpu_path
    cpu = torch.device("cpu")
    assert launchers("auto", cpu) is cpu_path and launchers("torch", cpu) is cpu_path
    assert launchers("torch", torch.device("meta")) is reference
    assert launchers("triton", cpu).perturb is noise.perturb
    with pytest.raises(InputError, match="unknown backend 'cuda'; known backends: auto, triton, torch"):
        launchers("cuda", cpu)


def test_triton_on_cpu_needs_the_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(InputError, match="set TRITON_INTERPRET=1"):
        launchers("triton", torch.device("cpu"))


GRID = ef.sigma_grid(6, 0.01, 20.0)


def test_profile_triton_equals_torch_with_a_network():
    model = ef.analytic.Gaussian(0.3, (2, 3, 5))
    data = model.sample(50).float()
    net = lambda x, s: model(x, s)  # noqa: E731  (a plain callable: not the fused path)
    a = ef.profile(net, data, GRID, samples=40, batch_size=17, backend="triton", progress=False)
    b = ef.profile(net, data, GRID, samples=40, batch_size=64, backend="torch", progress=False)
    np.testing.assert_allclose(a.sum, b.sum, rtol=1e-5)
    np.testing.assert_allclose(a.sumsq, b.sumsq, rtol=1e-5)


def test_profile_fused_point_set_triton_equals_torch():
    ps = ef.analytic.PointSet(rand(30, 12, seed=4))
    a = ef.profile(ps, ps, GRID, samples=40, backend="triton", progress=False)
    b = ef.profile(ps, ps, GRID, samples=40, backend="torch", progress=False)
    np.testing.assert_allclose(a.sum, b.sum, rtol=1e-4)
    np.testing.assert_array_equal(a.count, b.count)


@pytest.mark.parametrize("level", ["", "avx2", "scalar"])
def test_cpu_noise_is_the_twin_at_every_instruction_set(level):
    """The AVX-512, AVX2 and scalar loops draw the same bits (each in a process of its own: the level is chosen
    once per process)."""
    import os
    import subprocess
    import sys
    code = ("import torch; from entropic_fast import _noise; from entropic_fast.kernels import cpu, reference\n"
            "for d, r in ((1, 3), (7, 5), (33, 4), (77, 9), (1030, 3), (4099, 2)):\n"
            "    rid = torch.arange(r) * 1_000_003 + (5 << 32)\n"
            "    assert torch.equal(cpu.noise(2**63 - 25, rid, d), reference.noise(2**63 - 25, rid, d)), (d, r)\n"
            "    x0, s = torch.randn(r, d), torch.rand(r)\n"
            "    assert torch.equal(cpu.perturb(x0, s, 5, rid), reference.perturb(x0, s, 5, rid)), (d, r)\n"
            "print(_noise.simd())")
    env = {**os.environ, "EF_NOISE_SIMD": level}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() in ({"avx2": ("avx2", "scalar"), "scalar": ("scalar",)}.get(level, ("avx512", "avx2",
                                                                                                  "scalar")))


# ---- the importance draw of the model-free path, against an oracle written differently (issue 40: the Triton path
# takes reference.importance_perturb, so the twins' comparison cannot check it; this does)

def _oracle_scale(seed, rid):
    """Row by row: the third Philox word of the counters (2**32 - 1, id low, id high, 0), Python integers (numpy
    uint64 Philox of ``purepy``), placed among IS_WIDE's shares of 2**32."""
    from entropic_fast import purepy
    from entropic_fast.kernels.mixture import IS_WIDE
    out = []
    for r in rid:
        c = [np.array([v], np.uint64) for v in (2**32 - 1, r & 0xFFFFFFFF, r >> 32, 0)]
        word, edge, scale = int(purepy._philox(seed, c)[2][0]), 0, 1.0
        for tau, share in IS_WIDE:
            if int(edge * 2**32) <= word < int((edge + share) * 2**32):
                scale = tau
            edge += share
        out.append(scale)
    return np.array(out)


def _oracle_weight(x, x0, sigma):
    """``p / q`` per row in plain float64 arithmetic: p = N(0, s^2), q = (1 - sum shares) p + sum share p_tau."""
    from entropic_fast.kernels.mixture import IS_WIDE
    out = []
    for xr, x0r, s in zip(x.double().numpy(), x0.double().numpy(), sigma.double().numpy()):
        r2, d = float(((xr - x0r) ** 2).sum()) / s**2, xr.size
        q = 1 - sum(sh for _, sh in IS_WIDE) + sum(sh * math.exp(0.5 * r2 * (1 - t**-2)) / t**d for t, sh in IS_WIDE)
        out.append(1 / q)
    return np.array(out)


@pytest.mark.parametrize("rows, dim", [(1, 2), (37, 3), (200, 8)])
def test_the_importance_draw_matches_an_oracle_written_differently(rows, dim):
    seed, rid = 987654321, torch.arange(rows, dtype=torch.int64) * 7919 + 2**33
    x0 = torch.randn(rows, dim, generator=torch.Generator().manual_seed(rows), dtype=torch.float64)
    sigma = torch.full((rows,), 0.7, dtype=torch.float64)
    np.testing.assert_array_equal(reference.noise_scale(seed, rid).numpy(), _oracle_scale(seed, rid.tolist()))
    x, w = reference.importance_perturb(reference.perturb, x0, sigma, seed, rid)
    plain = reference.perturb(x0, sigma * torch.as_tensor(_oracle_scale(seed, rid.tolist())), seed, rid)
    torch.testing.assert_close(x, plain, rtol=0, atol=0)
    np.testing.assert_allclose(w.numpy(), _oracle_weight(x, x0, sigma), rtol=1e-12)
