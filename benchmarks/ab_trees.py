"""Two source trees of entropic_fast side by side in one process: ``ef.profile`` of each, alternated call by call
(issue 28: the run as an object must not be slower, and must give the same sums).

    python benchmarks/ab_trees.py OLD_ROOT [--device cuda] [--pairs 30] [--what profile|compare]

OLD_ROOT holds an older ``entropic_fast/`` (with its built extensions); it is copied to a temporary folder as
``entropic_fast_old`` (its absolute imports renamed), so both run in this process on the same network, data and
grid, and the machine's drift cancels within each pair. Reports the median of the per-pair time ratios and checks
that the two profiles' sums are equal.
"""
import argparse
import os
import pathlib
import shutil
import statistics
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_speed_estimator import SmallConvNet  # noqa: E402


def renamed_copy(root, folder):
    """``root/entropic_fast`` copied to ``folder/entropic_fast_old`` with its absolute imports renamed."""
    dest = pathlib.Path(folder) / "entropic_fast_old"
    shutil.copytree(pathlib.Path(root) / "entropic_fast", dest, ignore=shutil.ignore_patterns("__pycache__"))
    for f in dest.rglob("*.py"):
        f.write_text(f.read_text().replace("entropic_fast", "entropic_fast_old"))
    return folder


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("old", help="root of the older tree (holds entropic_fast/ with built extensions)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--pairs", type=int, default=30, help="alternated pairs of calls")
    p.add_argument("--side", type=int, default=16, help="image side")
    p.add_argument("--width", type=int, default=32, help="conv width")
    p.add_argument("--samples", type=int, default=256, help="samples per sigma (32 sigmas)")
    p.add_argument("--batch", type=int, default=256, help="batch size")
    p.add_argument("--what", default="profile", choices=("profile", "compare"),
                   help="profile: ef.profile; compare: ef.compare (4 cells, DDIM at 4 and 8 evaluations)")
    args = p.parse_args()
    sys.path.insert(0, renamed_copy(args.old, tempfile.mkdtemp()))
    import entropic_fast as new
    import entropic_fast_old as old
    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    net, data = SmallConvNet(args.width).eval().to(dev), torch.randn(2000, 1, args.side, args.side, device=dev)
    grid = new.sigma_grid(32)

    prof = new.Profile.from_curve(grid, 0.25 * grid**2 / (grid**2 + 0.25) * args.side**2, dim=args.side**2)
    features = torch.nn.Linear(args.side**2, 16).to(dev).requires_grad_(False)  # fixed random features

    def run(m):
        t0 = time.perf_counter()
        if args.what == "profile":
            out = m.profile(net, data, grid, samples=args.samples, batch_size=args.batch, progress=False, control=None)
        else:
            out = m.compare(net, data, profile=m.Profile.from_curve(grid, prof.mse, dim=prof.dim),
                            kinds=("rescaled", "karras"), steps=(4, 8), samplers=("ddim",), samples=args.samples,
                            features=lambda x: features(x.flatten(1)), batch_size=args.batch, progress=False)
        sync()
        return time.perf_counter() - t0, out

    def same_result(a, b):
        if args.what == "compare":
            return list(a.values.values()) == list(b.values.values())  # the cells are each tree's own class
        return bool((a.sum == b.sum).all() and (a.sumsq == b.sumsq).all() and (a.count == b.count).all())
    (_, a), (_, b) = run(old), run(new)
    same = same_result(a, b)
    ratios = []
    for i in range(args.pairs):
        o, n = (run(old)[0], run(new)[0]) if i % 2 == 0 else reversed((run(new)[0], run(old)[0]))
        ratios.append(n / o)
    q = statistics.quantiles(ratios, n=4)
    name = torch.cuda.get_device_name() if dev.type == "cuda" else "cpu"
    print(f"{name}, {args.what}: new over old, alternated in one process: median {statistics.median(ratios):.3f}x (quartiles "
          f"{q[0]:.3f}x to {q[2]:.3f}x, {args.pairs} pairs); the same result bit for bit: {same}")


if __name__ == "__main__":
    main()
