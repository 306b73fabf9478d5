"""What ``ef.Recorder.add`` costs beside a training step (issue 30: negligible), paired in one run.

    python benchmarks/recorder_cost.py [--device cpu] [--steps 40]

Two networks: the shipped digits model's training step (``digits.edm2_loss``, batch 128) and a wider conv net on
3x32x32 (batch 64); each step is timed with and without the recorder, alternating, and the median of the per-pair
ratios is reported.
"""
import argparse
import statistics
import sys
import time

import torch

import entropic_fast as ef
from entropic_fast import digits

sys.path.insert(0, __import__("os").path.dirname(__file__))
from compare_throughput import ColourNet  # noqa: E402


def digits_step(device):
    net = digits.EDMDenoiser(0.75, 32).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = digits.load("train")[0].to(device)
    g = torch.Generator(device=device).manual_seed(0)

    def step(rec):
        loss = digits.edm2_loss(net, x[torch.randint(len(x), (128,), generator=g, device=device)], g, recorder=rec)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return step


def conv_step(device, width=128):
    net = ColourNet(width).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x0 = torch.randn(64, 3, 32, 32, device=device)

    def step(rec):
        sigma = torch.exp(torch.randn(64, device=device) * 1.2 - 1.2)
        x0_hat = net(x0 + sigma.view(-1, 1, 1, 1) * torch.randn_like(x0), sigma)
        loss = ((x0_hat - x0) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if rec is not None:
            rec.add(sigma, x0_hat, x0)
    return step


def paired(step, steps, sync):
    rec = ef.Recorder(0.002, 80.0, 64, half_life=400)
    step(rec), step(None)
    ratios = []
    for i in range(steps):
        times = {}
        for which in ((rec, None) if i % 2 == 0 else (None, rec)):
            t0 = time.perf_counter()
            step(which)
            sync()
            times[which is None] = time.perf_counter() - t0
        ratios.append(times[False] / times[True])
    return statistics.median(ratios), min(ratios), max(ratios)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--steps", type=int, default=40, help="pairs of steps")
    args = p.parse_args()
    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    for name, step in (("digits model, batch 128", digits_step(dev)), ("conv width 128, 3x32x32, batch 64",
                                                                      conv_step(dev))):
        med, lo, hi = paired(step, args.steps, sync)
        print(f"{name}: a step with the recorder over one without, median {med:.3f}x ({lo:.3f}x to {hi:.3f}x, "
              f"{args.steps} pairs)")


if __name__ == "__main__":
    main()
