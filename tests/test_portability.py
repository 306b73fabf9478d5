"""Bit-identity promises under every numeric path the CPU, torch and MKL may pick (issue 26).

Each variant runs in a subprocess with the environment that changes a numeric path: MKL's conditional numerical
reproducibility branch (``MKL_CBWR``: AVX2 is the branch MKL takes on AMD CPUs, and the one whose matrix
products rounded a row by its position in the block), MKL's instruction cap, torch's CPU capability, numpy's SIMD
dispatch, the C++ loops' instruction set, one or two threads, and operands at shifted alignments. The inputs are
exact (small integers over powers of two, sigmas by Python's ``math.exp``) so that any difference comes from the
path under test, and every variant must give the same bits: the model-free path's row errors for every batch split,
whole profiles (the model-free path and a network's) at each batch size, the sigma grids and the rescaled and
entropic schedules (numpy's exp and log take AVX-512 code on some CPUs and libm's on others, so the library
computes them itself). Not promised: schedules that go through LAPACK (LAS's smoothing, bands, gaussian-optimal),
the control-variate sums (float32 BLAS products), and the network's own rounding.
"""
import json
import os
import subprocess
import sys

import pytest

CHILD = r'''
import hashlib, json, math, sys
import torch
import entropic_fast as ef
from entropic_fast.kernels import cpu, reference

torch.set_num_threads(int(sys.argv[1]))
shift = int(sys.argv[2])


def at(t):
    """``t`` copied to a buffer starting ``shift`` elements past an allocation (another alignment)."""
    buf = torch.zeros(t.numel() + shift, dtype=t.dtype)
    out = buf[shift:].view(t.shape)
    out.copy_(t)
    return out


def digest(*arrays):
    h = hashlib.sha1()
    for a in arrays:
        h.update(torch.as_tensor(a).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


g = torch.Generator().manual_seed(1)
means = at(torch.randint(-512, 512, (40, 6), generator=g).float() / 256)
x0 = at(means[torch.randint(0, 40, (100,), generator=g)] + torch.randint(-64, 64, (100, 6), generator=g).float() / 256)
sigma = at(torch.tensor([math.exp(-5 + 9 * i / 99) for i in range(100)]).float())
rid = torch.arange(100)
out = {}
for name, var in (("gmm", torch.full((40,), 0.046875)), ("points", torch.zeros(40))):
    logw = torch.full((40,), -math.log(40))
    splits = []
    for b in (1, 3, 7, 31, 32, 64, 100):  # one accumulator column per row: acc[0] holds the row errors themselves
        acc = torch.zeros(4, 100, dtype=torch.float64)
        for lo in range(0, 100, b):
            cpu.ideal_error(means, var, logw, x0[lo:lo + b], sigma[lo:lo + b], 5, rid[lo:lo + b], rid[lo:lo + b], acc)
        splits.append(digest(acc))
    out["rows " + name] = splits
    twin = []
    for b in (3, 7, 31, 64):
        acc = torch.zeros(4, 100, dtype=torch.float64)
        for lo in range(0, 100, b):
            x, w = reference.importance_perturb(cpu.perturb, x0[lo:lo + b], sigma[lo:lo + b], 5, rid[lo:lo + b])
            reference.ideal_error_of(means, var, logw, x0[lo:lo + b], x, sigma[lo:lo + b],
                                     sigma_index=rid[lo:lo + b], acc=acc, weight=w)
        twin.append(digest(acc))
    out["twin rows " + name] = twin
grid = [math.exp(math.log(0.01) + math.log(8000) * i / 15) for i in range(16)]
model = ef.analytic.GMM(means, 0.046875)
for b in (3, 31, 500):
    p = ef.profile(model, x0, grid, samples=40, batch_size=b, progress=False)
    out[f"profile batch {b}"] = digest(p.sum, p.sumsq, p.count)
net = torch.nn.Sequential(torch.nn.Linear(6, 6))  # a network: only the noise and the sums are ours
with torch.no_grad():
    net[0].weight.copy_(torch.eye(6) / 2)
    net[0].bias.zero_()
for b in (7, 64):
    p = ef.profile(lambda x, s: net(x), x0, grid, samples=24, batch_size=b, progress=False)
    out[f"network batch {b}"] = digest(p.sum, p.sumsq, p.count)
out["grid"] = digest(ef.sigma_grid(128), ef.sigma_grid(40, 1e-3, 1e3, rho=0.01), ef.grids.exponential(9))
exact = ef.Profile.from_curve(ef.sigma_grid(64), [6 * s * s * 0.25 / (s * s + 0.25) for s in ef.sigma_grid(64)], 6)
out["schedules"] = digest(*(ef.schedule(exact, 16, kind=k) for k in ("rescaled", "entropic")))
print(json.dumps(out))
'''

VARIANTS = {
    "default": {},
    "MKL_CBWR=COMPATIBLE": {"MKL_CBWR": "COMPATIBLE"},
    "MKL_CBWR=AVX2 (MKL's branch on AMD)": {"MKL_CBWR": "AVX2"},
    "MKL_ENABLE_INSTRUCTIONS=AVX2": {"MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "ATEN_CPU_CAPABILITY=default": {"ATEN_CPU_CAPABILITY": "default"},
    "ATEN_CPU_CAPABILITY=avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
    "EF_NOISE_SIMD=scalar": {"EF_NOISE_SIMD": "scalar"},
    "EF_NOISE_SIMD=avx2": {"EF_NOISE_SIMD": "avx2"},
    "numpy without AVX-512": {"NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR"},
}

def _has_avx512():
    """Whether this CPU can run ATen's AVX-512 kernels: forcing them on one without (AMD before Zen 4, older Intel)
    dies of SIGILL inside torch, a path the CPU can never take."""
    try:
        return "avx512f" in open("/proc/cpuinfo").read().split()
    except OSError:
        return False


if _has_avx512():
    VARIANTS["ATEN_CPU_CAPABILITY=avx512"] = {"ATEN_CPU_CAPABILITY": "avx512"}
RUNS = [(name, env, 2, 0) for name, env in VARIANTS.items()] + [("one thread", {"OMP_NUM_THREADS": "1"}, 1, 0),
                                                              ("shifted by 1 float", {}, 2, 1),
                                                              ("shifted by 3 floats", {}, 2, 3)]


def run_child(env, threads, shift):
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MKL_", "ATEN_CPU", "EF_NOISE", "OMP_NUM", "NPY_"))}
    res = subprocess.run([sys.executable, "-c", CHILD, str(threads), str(shift)], env={**clean, **env},
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def results():
    return {name: run_child(env, threads, shift) for name, env, threads, shift in RUNS}


def test_model_free_row_errors_are_the_same_bits_for_every_batch_split(results):
    for name, got in results.items():
        for key in ("rows gmm", "rows points"):  # the twin's rows are not promised (BLAS)
            assert len(set(got[key])) == 1, f"{name}: {key} differ between batch splits: {got[key]}"


def test_every_numeric_path_gives_the_same_bits(results):
    """MKL's branch, torch's capability, the noise loop's instruction set, threads, alignment: one answer."""
    first_name, first = next(iter(results.items()))
    for name, got in results.items():
        differ = sorted(k for k in first if got[k] != first[k] and not k.startswith("twin"))
        assert not differ, f"{name} differs from {first_name} in {differ}"


def test_the_variants_change_the_numeric_paths(results):
    """The matrix has teeth: the torch twin of the same computation (float32 matrix products through BLAS, sums
    by torch's vectorised reductions) does not give one answer across these variants, nor, on some, across batch
    splits (under MKL's AVX2 branch a product rounds a row by its place in the block: the fault seen on AMD)."""
    twins = {name: tuple(got["twin rows gmm"]) for name, got in results.items()}
    assert len(set(twins.values())) > 1, f"every variant ran the same numeric path: {twins}"
