"""Train the shipped digits denoiser: EDM preconditioning, EDM2's uncertainty-weighted loss and logvar head.

Seeded; about 10 minutes on 2 CPU cores. Writes entropic_fast/weights/digits_edm.pt (EMA weights)
and digits_edm.json (how it was made), and the profile recorded while it trained (``ef.Recorder``: no extra
network evaluation, no draw of its own) beside them, digits_edm_recorded.npz, with the 16-step rescaled schedule of
the recorded profile every 250 steps in digits_edm_recorded.json (how the schedule drifted).

Usage: python scripts/train_digits.py [--steps 4000] [--batch 128] [--out PATH]
"""
import argparse
import copy
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
from _common import ema_update, save_with_record, warmup_cosine  # noqa: E402

import entropic_fast as ef  # noqa: E402
from entropic_fast import digits  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--channels", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=os.path.join(digits.WEIGHTS, "digits_edm.pt"))
    ap.add_argument("--half-life", type=float, default=400.0,
                    help="the recorder forgets older steps with this half-life (in steps)")
    args = ap.parse_args()
    recorder = ef.Recorder(0.002, 80.0, 64, half_life=args.half_life)
    drift = []
    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(args.seed)
    x, _ = digits.load("train")
    net = digits.EDMDenoiser(float(x.std()), args.channels)
    ema = copy.deepcopy(net).requires_grad_(False)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    sched = warmup_cosine(opt, args.steps)
    t0, losses = time.time(), []
    for step in range(args.steps):
        loss = digits.edm2_loss(net, x[torch.randint(len(x), (args.batch,), generator=g)], g, recorder=recorder)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        ema_update(ema, net, args.ema)
        losses.append(loss.item())
        if (step + 1) % 250 == 0:
            drift.append(snapshot(recorder, step + 1))
            print(f"step {step + 1}/{args.steps} loss {sum(losses[-250:]) / 250:.4f} {time.time() - t0:.0f}s", flush=True)
    xt, _ = digits.load("test")
    with torch.no_grad():
        test_loss = float(torch.stack([digits.edm2_loss(ema, xt, torch.Generator().manual_seed(k)) for k in range(8)]).mean())
    rec = save_with_record(ema.state_dict(), args.out, {
        "command": "python scripts/train_digits.py " + " ".join(sys.argv[1:]), "seed": args.seed,
        "steps": args.steps, "batch": args.batch, "lr": args.lr, "ema": args.ema, "channels": args.channels,
        "sigma_data": net.sigma_data, "data": "sklearn digits, train split (80%, seed 0), scaled to [-1, 1]",
        "loss": "EDM2 uncertainty-weighted; sigma log-normal (P_mean -1.2, P_std 1.2), 25% log-uniform on [0.002, 80]",
        "final_train_loss_250": sum(losses[-250:]) / 250, "test_loss": test_loss,
        "parameters": sum(p.numel() for p in net.parameters()), "seconds": round(time.time() - t0)})
    print(rec)
    base = os.path.splitext(args.out)[0]
    recorder.profile().with_meta(weights=os.path.basename(args.out), sha256=rec["sha256"]).save(base + "_recorded.npz")
    ef.files.write_text(base + "_recorded.json", json.dumps(
        {"half_life": args.half_life, "kind": "rescaled", "steps": 16, "snapshots": drift}, indent=1))
    print(f"wrote {base}_recorded.npz and {base}_recorded.json")


def snapshot(recorder, step):
    """The 16-step rescaled schedule of the profile recorded so far (a host sync, every 250 steps)."""
    prof = recorder.profile()
    try:
        sigmas = ef.schedule(prof, 16, "rescaled").tolist()
    except ef.InputError:  # a knot with no samples yet
        sigmas = None
    return {"step": step, "sigmas": sigmas, "effective_samples": prof.meta["recorded"]["effective_samples"]}


if __name__ == "__main__":
    main()
