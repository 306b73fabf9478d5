"""Train the second shipped model: a small DiT on 16x16 shifted digits (``entropic_fast.digits16``), EDM
preconditioning, EDM2's uncertainty-weighted loss, EMA weights.

Seeded; about 15 minutes on 2 CPU cores. Writes entropic_fast/weights/digits16_dit.pt and digits16_dit.json (how it
was made). It exists so that a schedule rule can be checked on a model of another resolution and architecture
than the digits UNet (benchmarks/compare_digits.py --model digits16).

Usage: python scripts/train_digits16.py [--steps 6000] [--batch 128] [--out PATH]
"""
import argparse
import copy
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
from _common import ema_update, save_with_record, warmup_cosine  # noqa: E402

from entropic_fast import digits, digits16  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--width", type=int, default=96)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=os.path.join(digits.WEIGHTS, "digits16_dit.pt"))
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(args.seed)
    x, _ = digits16.load("train")
    net = digits16.network(float(x.std()), args.width, args.depth, args.heads)
    ema = copy.deepcopy(net).requires_grad_(False)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    sched = warmup_cosine(opt, args.steps)
    t0, losses = time.time(), []
    for step in range(args.steps):
        loss = digits.edm2_loss(net, x[torch.randint(len(x), (args.batch,), generator=g)], g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        ema_update(ema, net, args.ema)
        losses.append(loss.item())
        if (step + 1) % 250 == 0:
            print(f"step {step + 1}/{args.steps} loss {sum(losses[-250:]) / 250:.4f} {time.time() - t0:.0f}s", flush=True)
    xt, _ = digits16.load("test")
    with torch.no_grad():
        test_loss = float(torch.stack([digits.edm2_loss(ema, xt[:2048], torch.Generator().manual_seed(k))
                                       for k in range(4)]).mean())
    rec = save_with_record(ema.state_dict(), args.out, {
        "command": "python scripts/train_digits16.py " + " ".join(sys.argv[1:]), "seed": args.seed,
        "steps": args.steps, "batch": args.batch, "lr": args.lr, "ema": args.ema, "width": args.width,
        "depth": args.depth, "heads": args.heads, "sigma_data": net.sigma_data,
        "data": "sklearn digits, train split (80%, seed 0), bilinear to 16x16, nine one-pixel shifts, [-1, 1]",
        "loss": "EDM2 uncertainty-weighted; sigma log-normal (P_mean -1.2, P_std 1.2), 25% log-uniform on [0.002, 80]",
        "final_train_loss_250": sum(losses[-250:]) / 250, "test_loss": test_loss,
        "parameters": sum(p.numel() for p in net.parameters()), "seconds": round(time.time() - t0)})
    print(rec)


if __name__ == "__main__":
    main()
