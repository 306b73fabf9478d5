"""What users meet on a GPU beyond the kernels (issue 32): the gpu_suite sections ``dit``, ``longrun``, ``devices``.

- ``dit``: a DiT-class transformer (Peebles & Xie 2023: patch size 2, adaLN blocks; S and XL widths) on 4x32x32
  and 4x64x64 latents in bfloat16, written here (no download): ``ef.profile`` against bare network calls and
  against the plain PyTorch loop a user would write, with and without ``spectral=True``.
- ``longrun``: SIGTERM in the middle of a device run of the CLI, then resume, against the uninterrupted run; a
  real out-of-memory error (the process capped by ``set_per_process_memory_fraction``) that the halving rides
  out; the adaptive mode on the device against the CPU with the same seed.
- ``devices``: the digits model profiled on the device and on the CPU with the same seed, and where the
  difference comes from (the noise, the network's rounding).

Each runs at tiny sizes on the CPU with ``--smoke`` (CI), the device there being the CPU (kernels in Triton's
interpreter), and the OOM simulated where no CUDA device can be capped.
"""
import math
import os
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import entropic_fast as ef
from entropic_fast import digits
from entropic_fast.adapters import edm
from entropic_fast.kernels import cpu, launchers

HERE = os.path.dirname(os.path.abspath(__file__))


# ---------------------------------------------------------------- DiT (Peebles & Xie 2023), EDM-preconditioned

def modulate(x, shift, scale):
    """adaLN modulation (DiT eq. of section 3.2)."""
    return x * (1 + scale[:, None]) + shift[:, None]


class Block(nn.Module):
    """One DiT block: attention and MLP, each under adaLN shift, scale and gate from the noise embedding."""

    def __init__(self, width, heads):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(width, elementwise_affine=False), nn.LayerNorm(width, elementwise_affine=False)
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(approximate="tanh"), nn.Linear(4 * width, width))
        self.ada = nn.Linear(width, 6 * width)

    def attention(self, x):
        b, n, w = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, w))

    def forward(self, x, c):
        s1, a1, g1, s2, a2, g2 = self.ada(F.silu(c)).chunk(6, dim=1)
        x = x + g1[:, None] * self.attention(modulate(self.norm1(x), s1, a1))
        return x + g2[:, None] * self.mlp(modulate(self.norm2(x), s2, a2))


class DiT(nn.Module):
    """DiT with patch size 2 on ``channels x side x side`` latents, under EDM's preconditioning (Karras et al. 2022,
    table 1: c_skip, c_out, c_in, c_noise with sigma_data 0.5)."""
    SIZES = {"S": (12, 384, 6), "XL": (28, 1152, 16)}  # depth, width, heads

    def __init__(self, size, channels=4, side=32, patch=2):
        super().__init__()
        depth, width, heads = self.SIZES[size]
        self.patch, self.channels, self.side = patch, channels, side
        self.embed = nn.Conv2d(channels, width, patch, stride=patch)
        self.pos = nn.Parameter(torch.randn(1, (side // patch) ** 2, width) * 0.02)
        self.freqs = nn.Parameter(torch.randn(width // 2) * 4, requires_grad=False)
        self.noise = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(depth))
        self.norm, self.out = nn.LayerNorm(width, elementwise_affine=False), nn.Linear(width, patch * patch * channels)

    def raw(self, x, c_noise):
        """F(c_in x, c_noise): patches in, tokens through the blocks, patches out."""
        h = self.embed(x).flatten(2).transpose(1, 2) + self.pos
        f = c_noise[:, None] * self.freqs[None]
        c = self.noise(torch.cat([f.cos(), f.sin()], 1))
        for block in self.blocks:
            h = block(h, c)
        h = self.out(self.norm(h))
        g, p = self.side // self.patch, self.patch
        return h.view(-1, g, g, p, p, self.channels).permute(0, 5, 1, 3, 2, 4).reshape(x.shape)

    def forward(self, x, sigma, labels=None):
        s = sigma.to(torch.float32).view(-1, 1, 1, 1)
        c_skip, c_out, c_in = 0.25 / (s * s + 0.25), s * 0.5 / (s * s + 0.25).sqrt(), 1 / (s * s + 0.25).sqrt()
        return c_skip * x + c_out * self.raw(c_in * x, sigma.to(torch.float32).log() / 4).to(torch.float32)


def plain_loop(net, data, grid, samples, batch, seed=0):
    """The loop a user would write: draw rows and noise, call the network, add the squared errors in float64."""
    g = torch.Generator(data.device).manual_seed(seed)
    sig = torch.as_tensor(grid, dtype=torch.float32, device=data.device).repeat_interleave(samples)
    idx = torch.arange(len(grid), device=data.device).repeat_interleave(samples)
    acc = torch.zeros(len(grid), dtype=torch.float64, device=data.device)
    with torch.no_grad():
        for i in range(0, sig.numel(), batch):
            s = sig[i:i + batch]
            x0 = data[torch.randint(len(data), (s.numel(),), generator=g, device=data.device)]
            d = net(x0 + s.view(-1, 1, 1, 1) * torch.randn(x0.shape, generator=g, device=data.device), s)
            acc.index_add_(0, idx[i:i + batch], (d.float() - x0).square().flatten(1).sum(1).double())
    return (acc / samples).cpu().numpy()


def bare_calls(net, data, grid, samples, batch):
    """Only the network calls, on inputs prepared beforehand: the floor the others are measured against."""
    n = samples * len(grid)
    x0 = data[torch.randint(len(data), (n,), device=data.device)]
    sig = torch.as_tensor(grid, dtype=torch.float32, device=data.device).repeat_interleave(samples)
    xs = x0 + sig.view(-1, 1, 1, 1) * torch.randn_like(x0)

    def run():
        with torch.no_grad():
            for i in range(0, n, batch):
                net(xs[i:i + batch], sig[i:i + batch])
    return run


DIT_CONFIGS = [("S", 32, 64, 256, 2), ("S", 64, 64, 256, 2), ("XL", 32, 64, 128, 2), ("XL", 64, 32, 64, 2),
               ("XL", 32, 512, 128, 2)]  # size, side, samples per sigma (8 sigmas), batch, rounds


def dit(device, smoke, timed, configs=None):
    """Seconds of each way to the same error curve, per (size, side, samples), medians of interleaved rounds."""
    configs = configs or ([("S", 8, 4, 4, 2)] if smoke else DIT_CONFIGS)
    rows = []
    for size, side, samples, batch, rounds in configs:
        torch.manual_seed(0)
        module = DiT(size, side=side).to(device).eval()
        net = edm.denoiser(module, dtype=torch.bfloat16 if device.type == "cuda" else None)
        data = torch.randn(512, 4, side, side, device=device)
        grid = ef.sigma_grid(3 if smoke else 8)
        ways = {"bare calls": bare_calls(net, data, grid, samples, batch),
                "plain torch loop": lambda: plain_loop(net, data, grid, samples, batch),
                "ef.profile": lambda: ef.profile(net, data, grid, samples=samples, batch_size=batch, progress=False,
                                                 device=device, control=None),
                "ef.profile(spectral=True)": lambda: ef.profile(net, data, grid, samples=samples, batch_size=batch,
                                                                progress=False, device=device, spectral=True,
                                                                control=None)}
        times = {k: [] for k in ways}
        for fn in ways.values():
            fn()  # warm-up: kernels compiled, caches filled
        for _ in range(rounds):
            for k, fn in ways.items():
                times[k].append(timed(fn, device, 1))
        params = sum(p.numel() for p in module.parameters())
        rows.append((f"DiT-{size}/2", side, params, samples * grid.size, batch, {k: float(np.median(v)) for k, v in times.items()}))
        del module, net, data
        torch.cuda.empty_cache() if device.type == "cuda" else None
    return rows


def dit_table(rows):
    ways = list(rows[0][-1])
    head = ["| network | latent | parameters | evaluations | batch | " + " | ".join(f"{w} s" for w in ways)
            + " | profile / bare | profile / plain loop | spectral / bare |",
            "| --- | --- | --- | --- | --- | " + " | ".join("---" for _ in ways) + " | --- | --- | --- |"]
    return head + [f"| {name} | 4x{side}x{side} | {p / 1e6:.0f}M | {n} | {b} | " + " | ".join(f"{t[w]:.3f}" for w in ways)
                   + f" | {t['ef.profile'] / t['bare calls']:.3f} | {t['ef.profile'] / t['plain torch loop']:.3f}"
                   f" | {t['ef.profile(spectral=True)'] / t['bare calls']:.3f} |"
                   for name, side, p, n, b, t in rows]


# ---------------------------------------------------------------- long runs on the device

def marked_digits():
    """The shipped digits model on $EF_DEVICE that touches $EF_MARKER at its first call and sleeps 50 ms a call
    (``--model gpu_acceptance:marked_digits``: the SIGTERM check knows the loop has started)."""
    net = digits.denoiser().to(os.environ.get("EF_DEVICE", "cpu"))

    def call(x, sigma):
        marker = os.environ.get("EF_MARKER")
        if marker and not os.path.exists(marker):
            open(marker, "w").close()
        time.sleep(0.05)
        return net(x, sigma)

    call.fingerprint = lambda: "marked digits"
    return call


def _cli(args, device, marker=None):
    env = {**os.environ, "PYTHONPATH": HERE + os.pathsep + os.environ.get("PYTHONPATH", ""), "EF_DEVICE": str(device)}
    if marker:
        env["EF_MARKER"] = marker
    return subprocess.Popen([sys.executable, "-m", "entropic_fast.cli", "profile", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def sigterm_resume(device, smoke):
    """SIGTERM once the loop runs, then the same command again: (exit code, counts equal, max relative sum
    difference, seconds from the signal to the exit) against the uninterrupted command."""
    with tempfile.TemporaryDirectory() as tmp:
        common = ["--model", "gpu_acceptance:marked_digits", "--data", "digits", "--samples", "32" if smoke else "96",
                  "--grid", "0.002", "80", "8" if smoke else "24", "--batch-size", "16", "--device", str(device),
                  "--quiet", "--control", "none"]
        whole = _cli([*common, "--out", f"{tmp}/whole.npz"], device)
        assert whole.wait(timeout=900) == 0, whole.stderr.read()[-2000:]
        marker, ck = f"{tmp}/started", f"{tmp}/run.ckpt"
        proc = _cli([*common, "--out", f"{tmp}/cut.npz", "--checkpoint", ck], device, marker)
        while not os.path.exists(marker) and proc.poll() is None:
            time.sleep(0.01)
        time.sleep(0.2)
        t = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=300)
        stop = time.perf_counter() - t
        resumed_from = os.path.getsize(ck) if os.path.exists(ck) else 0
        rerun = _cli([*common, "--out", f"{tmp}/cut.npz", "--checkpoint", ck], device)
        assert rerun.wait(timeout=900) == 0, rerun.stderr.read()[-2000:]
        a, b = ef.Profile.load(f"{tmp}/cut.npz"), ef.Profile.load(f"{tmp}/whole.npz")
        return code, bool(np.array_equal(a.count, b.count)), float(np.max(np.abs(a.sum / b.sum - 1))), stop, resumed_from


def out_of_memory(device, smoke):
    """A batch that cannot fit in a capped process: (batches tried, batch used, counts equal, max relative sum
    difference against an uncapped run at the batch used, how the OOM came)."""
    torch.manual_seed(0)
    module = DiT("S", side=8 if smoke else 64).to(device).eval()
    data = torch.randn(256, 4, module.side, module.side, device=device)
    grid = ef.sigma_grid(4)
    seen = []

    def net(x, sigma):
        seen.append(x.shape[0])
        if device.type != "cuda" and x.shape[0] > 16:  # no CUDA to cap: the error the allocator would raise
            raise torch.OutOfMemoryError("CUDA out of memory (simulated on the CPU)")
        return module(x, sigma)

    how = "simulated (no CUDA device)"
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        with torch.no_grad():
            module(data[:64], torch.ones(64, device=device))
        per_row = (torch.cuda.max_memory_allocated() - base) / 64
        cap = base + 200 * per_row  # room for about 200 rows of activations
        torch.cuda.set_per_process_memory_fraction(cap / torch.cuda.get_device_properties(device).total_memory)
        how = f"real: process capped at {cap / 2**30:.2f} GiB ({per_row / 2**20:.1f} MiB a row)"
    try:
        got = ef.profile(net, data, grid, samples=64 if smoke else 512, batch_size=2048, progress=False,
                         device=device, control=None)
    finally:
        if device.type == "cuda":
            torch.cuda.set_per_process_memory_fraction(1.0)
    used = got.meta["batch_size_used"]
    ref = ef.profile(module, data, grid, samples=64 if smoke else 512, batch_size=used, progress=False,
                     device=device, control=None)
    return sorted(set(seen), reverse=True), used, bool(np.array_equal(got.count, ref.count)), \
        float(np.max(np.abs(got.sum / ref.sum - 1))), how


def adaptive_devices(device, smoke):
    """The adaptive mode on the device and on the CPU, same seed: (evaluations and plan of each, max relative mse
    difference)."""
    data, _ = digits.load("train")
    kw = dict(tolerance=0.1 if smoke else 0.03, steps=8 if smoke else 16, progress=False, control=None,
              max_evaluations=4000 if smoke else 20000)
    out = []
    for dev in (device, torch.device("cpu")):
        net = digits.denoiser().to(dev)
        p = ef.profile(net, data.to(dev), ef.sigma_grid(16 if smoke else 32), device=dev, **kw)
        out.append((p.meta["evaluations"], p.meta["adaptive"]["plan_units"], p.mse))
    (ea, pa, ma), (eb, pb, mb) = out
    return ea, eb, pa == pb, float(np.nanmax(np.abs(ma / mb - 1)))


def longrun(device, smoke):
    return sigterm_resume(device, smoke), out_of_memory(device, smoke), adaptive_devices(device, smoke)


def longrun_table(r):
    (code, counts, sums, stop, ck), (tried, used, ocounts, osums, how), (ea, eb, same_plan, mdiff) = r
    return ["| check | result |", "| --- | --- |",
            f"| SIGTERM mid-run (CLI, `--checkpoint`) | exit {code}, {stop:.2f} s from the signal to the exit, "
            f"checkpoint {ck} bytes |",
            f"| resumed against uninterrupted | counts equal: {'yes' if counts else 'NO'}; max relative sum "
            f"difference {sums:.1e} |",
            f"| out of memory ({how}) | batches tried {tried}, going on at {used}; counts equal to an uncapped run "
            f"at {used}: {'yes' if ocounts else 'NO'}; max relative sum difference {osums:.1e} |",
            f"| adaptive mode, device against CPU, same seed | evaluations {ea} against {eb}; same plan: "
            f"{'yes' if same_plan else 'no'}; max relative mse difference {mdiff:.1e} |"]


# ---------------------------------------------------------------- the same seed on both devices

def devices(device, smoke):
    """The digits model on ``device`` and the CPU, same seed: max relative mse difference with each backend, and
    the noise's own difference (ulps of float32) between the device's kernels and the CPU's."""
    data, _ = digits.load("train")
    grid = ef.sigma_grid(8 if smoke else 32)
    kw = dict(samples=16 if smoke else 256, batch_size=128, progress=False, control=None)
    host = ef.profile(digits.denoiser(), data, grid, device="cpu", **kw).mse
    rows = []
    for backend in ("triton", "torch"):
        for tf32 in ((False,) if device.type != "cuda" else (True, False)):
            torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = tf32
            net = digits.denoiser().to(device)
            p = ef.profile(net, data.to(device), grid, device=device, backend=backend, **kw)
            rows.append((backend, tf32, float(np.max(np.abs(p.mse / host - 1)))))
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = True, False  # torch's defaults
    zero = torch.zeros(512, *data.shape[1:])  # x0 = 0, sigma = 1: perturb returns the noise itself
    rid, s = torch.arange(512), torch.ones(512)
    want = cpu.perturb(zero, s, 7, rid)
    ulps = {}
    for b in ("triton", "torch"):
        n = launchers(b, device).perturb(zero.to(device), s.to(device), 7, rid.to(device)).cpu()
        ulps[b] = float(((n - want).abs() / torch.finfo(torch.float32).eps / want.abs().clamp_min(1e-30)).max())
    return rows, ulps


def devices_table(r):
    rows, ulps = r
    return ["| device backend | TF32 in cuDNN / matmul | max relative mse difference from the CPU |",
            "| --- | --- | --- |"] + [f"| {b} | {'on' if t else 'off'} | {d:.1e} |" for b, t, d in rows] + [
        "", f"Noise against the CPU's (the largest relative difference, in float32 ulps): "
        f"Triton {ulps['triton']:.1f}, torch twin on the device {ulps['torch']:.1f}."]
