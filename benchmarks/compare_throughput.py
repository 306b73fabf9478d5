"""Samples per second of ``ef.compare`` against bare sampler calls on the same schedule and batches (issue 29:
the harness should cost under 2%).

    python benchmarks/compare_throughput.py [--device cuda] [--rounds 5]

One cell (DDIM, 16 steps, EDM schedule) of a conv denoiser on 3x32x32, 32768 samples in batches of 1024, features
the flattened samples (cheap: what is timed is the harness, not a feature network); the two alternate round by
round and the median of the per-round ratios is reported.
"""
import argparse
import statistics
import sys
import time

import torch

import entropic_fast as ef
from entropic_fast import samplers

sys.path.insert(0, __import__("os").path.dirname(__file__))
from test_speed_estimator import SmallConvNet  # noqa: E402


class ColourNet(torch.nn.Module):
    """``SmallConvNet`` on three channels."""

    def __init__(self, width):
        super().__init__()
        self.inner = SmallConvNet(width)
        self.inner.net[0] = torch.nn.Conv2d(4, width, 3, padding=1)
        self.inner.net[-1] = torch.nn.Conv2d(width, 3, 3, padding=1)

    def forward(self, x, sigma):
        s = sigma.view(-1, 1, 1, 1)
        h = torch.cat([x / (1 + s**2).sqrt(), s.log().expand_as(x[:, :1]) / 4], 1)
        return x / (1 + s**2) + s / (1 + s**2).sqrt() * self.inner.net(h)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--rounds", type=int, default=5, help="alternated rounds")
    p.add_argument("--width", type=int, default=128, help="conv width")
    p.add_argument("--samples", type=int, default=32768, help="samples per round")
    args = p.parse_args()
    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    net = ColourNet(args.width).eval().to(dev)
    ref = torch.randn(2048, 3, 32, 32)
    sig = torch.as_tensor(ef.grids.karras(16, 0.002, 80.0), dtype=torch.float64, device=dev)

    def harness():
        ef.compare(net, ref, kinds=["edm"], steps=[16], samplers=["ddim"], samples=args.samples, features=lambda x:
                   x.flatten(1)[:, :64], batch_size=1024, device=dev, progress=False)
        sync()

    def bare():
        for lo in range(0, args.samples, 1024):
            x = torch.randn(min(1024, args.samples - lo), 3, 32, 32, device=dev) * 80.0
            samplers.ddim(net, x, sig)
        sync()
    harness(), bare()
    ratios, rates = [], []
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        harness()
        t1 = time.perf_counter()
        bare()
        t2 = time.perf_counter()
        ratios.append((t1 - t0) / (t2 - t1))
        rates.append((args.samples / (t1 - t0), args.samples / (t2 - t1)))
    name = torch.cuda.get_device_name() if dev.type == "cuda" else "cpu"
    h, b = (statistics.median(r[i] for r in rates) for i in (0, 1))
    print(f"{name}: ef.compare {h:.0f} samples/s, bare sampler calls {b:.0f} samples/s; time ratio median "
          f"{statistics.median(ratios):.3f}x (range {min(ratios):.3f}x to {max(ratios):.3f}x, {args.rounds} rounds)")


if __name__ == "__main__":
    main()
