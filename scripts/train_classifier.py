"""Train the shipped digits classifier (its penultimate features give the Frechet distance of samples).

Seeded; about a minute on 2 CPU cores. Trains on the train split with small random shifts, reports
the test accuracy, writes entropic_fast/weights/digits_classifier.pt and .json.

Usage: python scripts/train_classifier.py [--epochs 60]
"""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
from _common import save_with_record  # noqa: E402

from entropic_fast import digits  # noqa: E402


def shift(x, g):
    """Random one-pixel translations (with the background value -1 filling in)."""
    dx, dy = torch.randint(-1, 2, (2,), generator=g).tolist()
    return torch.nn.functional.pad(x, (1, 1, 1, 1), value=-1.0)[:, :, 1 + dy:9 + dy, 1 + dx:9 + dx]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=os.path.join(digits.WEIGHTS, "digits_classifier.pt"))
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(args.seed)
    x, y = digits.load("train")
    xt, yt = digits.load("test")
    net = digits.Classifier()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.epochs)
    t0 = time.time()
    for epoch in range(args.epochs):
        net.train()
        for idx in torch.randperm(len(x), generator=g).split(64):
            loss = torch.nn.functional.cross_entropy(net(shift(x[idx], g)), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    net.eval()
    with torch.no_grad():
        acc = float((net(xt).argmax(1) == yt).float().mean())
        train_acc = float((net(x).argmax(1) == y).float().mean())
    print(f"test accuracy {acc:.4f} (train {train_acc:.4f}) in {time.time() - t0:.0f}s")
    print(save_with_record(net.state_dict(), args.out, {
        "command": "python scripts/train_classifier.py " + " ".join(sys.argv[1:]), "seed": args.seed,
        "epochs": args.epochs, "test_accuracy": acc, "train_accuracy": train_acc, "test_size": len(xt),
        "data": "sklearn digits, train split (80%, seed 0), scaled to [-1, 1], random 1-pixel shifts",
        "seconds": round(time.time() - t0)}))


if __name__ == "__main__":
    main()
