"""The schedule benchmark across processes with torch.distributed: every rank samples a share of the units, the
feature sums are all-reduced, and only rank 0 writes the table.

    torchrun --nproc_per_node=2 examples/torchrun_compare.py --out cmp
"""
import argparse

import torch
import torch.distributed as dist

import entropic_fast as ef


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True, help="the folder for compare.md, compare.json, compare.png")
    ap.add_argument("--samples", type=int, default=200, help="samples per cell and seed")
    ap.add_argument("--checkpoint", default=None, help="each rank resumes from CHECKPOINT.rank<r>-of-<w>")
    args = ap.parse_args()
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    model = ef.analytic.Gaussian(0.25, (1, 2, 2))
    ref = model.sample(3000, generator=torch.Generator().manual_seed(1))
    result = ef.compare(model, ref, kinds=["edm", "exponential"], steps=[4, 8], samplers=["ddim", "ddim-stochastic"],
                        samples=args.samples, seeds=2, features=lambda x: x.flatten(1), out=args.out,
                        checkpoint=args.checkpoint, batch_size=48, progress=False)
    if dist.get_rank() == 0:
        print(result.markdown())
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
