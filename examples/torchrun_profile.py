"""Profile across processes with torch.distributed: every rank takes a share of the work units,
the float64 accumulators are all-reduced, and only rank 0 writes the profile.

One node, two processes (CPU, gloo):
    torchrun --nproc_per_node=2 examples/torchrun_profile.py --out profile.npz
Several nodes (run on each, NODE_RANK = 0, 1, ...; GPUs use nccl):
    torchrun --nnodes=2 --node_rank=$NODE_RANK --nproc_per_node=8 \
        --rdzv_backend=c10d --rdzv_endpoint=$HEAD_NODE:29500 examples/torchrun_profile.py --out profile.npz
"""
import argparse
import os

import torch
import torch.distributed as dist

import entropic_fast as ef


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--model", default="digits", choices=("digits", "gmm"), help="the shipped digits model, or a GMM")
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--tolerance", type=float, default=None, help="adaptive: stop when the 16-step rescaled "
                    "schedule's 95%% band is within +-TOLERANCE (every rank takes the same decisions)")
    ap.add_argument("--max-evaluations", type=int, default=131072)
    ap.add_argument("--grid", type=int, default=128)
    ap.add_argument("--checkpoint", default=None)
    args = ap.parse_args()
    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    rank = dist.get_rank()
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if cuda else torch.device("cpu")
    if args.model == "digits":
        from entropic_fast import digits
        model, data = digits.denoiser().to(device), digits.load("train")[0].to(device)
    else:
        g = torch.Generator().manual_seed(0)
        model = ef.analytic.GMM(torch.randn(6, 4, generator=g, dtype=torch.float64), 0.1)
        data = model
    count = {"samples": args.samples} if args.tolerance is None else {
        "tolerance": args.tolerance, "max_evaluations": args.max_evaluations}
    prof = ef.profile(model, data, ef.sigma_grid(args.grid), **count, device=device, checkpoint=args.checkpoint,
                      progress=rank == 0)
    if rank == 0:
        prof.save(args.out)
        print(f"rank 0 wrote {args.out} ({dist.get_world_size()} ranks)")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
