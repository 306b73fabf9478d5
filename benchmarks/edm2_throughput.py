"""Forward cost of NVIDIA's EDM2 networks (XS to XXL, ImageNet-512 latents 4x64x64) and the profiler's overhead on them.

    python benchmarks/edm2_throughput.py --code-root PATH/TO/edm2 [--presets xs,xxl] [--batch 64] [--out FILE]

Needs a CUDA device and a checkout of https://github.com/NVlabs/edm2 (its ``training``, ``torch_utils``
and ``dnnlib``); the networks are built with random weights (speed does not depend on them), class
conditional (1000 labels), run as EDM2 samples them (``Precond``'s own float16). For each preset:
parameters, FLOPs per forward (``torch.utils.flop_counter``), bare forward throughput at ``--batch``,
and for the smallest and largest preset ``ef.profile`` against bare calls on prepared inputs
(interleaved, medians). The expected cost of a profile follows in ``benchmarks/results/edm2_cost.md``.
"""
import argparse
import os
import sys
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

import entropic_fast as ef
from entropic_fast.adapters import edm
from gpu_suite import timed  # median of CUDA-event timed calls, host launch included

PRESETS = {"xs": 128, "s": 192, "m": 256, "l": 320, "xl": 384, "xxl": 448}  # train_edm2.py model_channels


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--code-root", required=True, help="checkout of NVlabs/edm2")
    ap.add_argument("--presets", default=",".join(PRESETS))
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("edm2_throughput.py needs a CUDA device")
    if not os.path.isdir(os.path.join(args.code_root, "training")):
        sys.exit(f"--code-root {args.code_root!r} holds no training/ folder: point it at a checkout of NVlabs/edm2")
    sys.path.insert(0, args.code_root)
    from training.networks_edm2 import Precond
    dev, b = torch.device("cuda"), args.batch
    rows = []
    for name in args.presets.split(","):
        torch.manual_seed(0)
        net = Precond(64, 4, 1000, model_channels=PRESETS[name], dropout=0.0).to(dev).eval().requires_grad_(False)
        params = sum(p.numel() for p in net.parameters())
        x, s = torch.randn(b, 4, 64, 64, device=dev), torch.rand(b, device=dev) * 10 + 0.01
        lab = torch.nn.functional.one_hot(torch.randint(1000, (b,), device=dev), 1000).float()
        with FlopCounterMode(display=False) as fc:
            net(x[:1], s[:1], lab[:1])
        flops = fc.get_total_flops()
        fwd = timed(lambda: net(x, s, lab), dev, 5)
        over = None
        if name in (args.presets.split(",")[0], args.presets.split(",")[-1]):
            den, grid, samples = edm.denoiser(net), ef.sigma_grid(8), 4 * b
            data, labels = torch.randn(1024, 4, 64, 64, device=dev), torch.randint(1000, (1024,), device=dev)
            n = grid.size * samples
            xs = torch.randn(n, 4, 64, 64, device=dev)
            sig = torch.as_tensor(grid, dtype=torch.float32, device=dev).repeat_interleave(samples)
            ls = labels[torch.randint(1024, (n,), device=dev)]

            def bare():
                for i in range(0, n, b):
                    den(xs[i:i + b], sig[i:i + b], ls[i:i + b])

            def run():
                ef.profile(den, data, grid, samples=samples, batch_size=b, labels=labels, progress=False, device=dev)

            t_run, t_bare = [], []
            for _ in range(3):  # interleaved
                t_run.append(timed(run, dev, 1))
                t_bare.append(timed(bare, dev, 1))
            over = (n, float(np.median(t_run)), float(np.median(t_bare)))
        rows.append((name, PRESETS[name], params, flops, fwd, over))
        print(rows[-1], flush=True)
        net = None  # free it before the next preset
        torch.cuda.empty_cache()
    dev_name = torch.cuda.get_device_name()
    lines = [f"# EDM2 forward cost on {dev_name}", "",
             f"Command: `python benchmarks/edm2_throughput.py --code-root edm2 --batch {b}`  ",
             f"Machine: {dev_name}; torch {torch.__version__}; {time.strftime('%Y-%m-%d')}; networks built with random "
             "weights from NVlabs/edm2 `training/networks_edm2.py` (img512 presets: 4x64x64 latents, 1000 classes, "
             "float16 as EDM2 runs them).", "",
             f"| preset | channels | parameters | GFLOP per forward | forwards/s (batch {b}) | TFLOP/s achieved | "
             "ef.profile / bare (time) |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, ch, params, flops, fwd, over in rows:
        ratio = "" if over is None else f"{over[1] / over[2]:.3f} ({over[0]} evaluations: {over[1]:.2f} s / {over[2]:.2f} s)"
        lines.append(f"| {name} | {ch} | {params / 1e6:.0f}M | {flops / 1e9:.0f} | {b / fwd:.0f} | "
                     f"{flops * b / fwd / 1e12:.0f} | {ratio} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
