"""The ``entropic-fast`` command: schedules from a saved profile, a profile summary, the demo."""
import argparse
import json
import os
import sys

import numpy as np

from .errors import InputError
from .profile import Profile
from .schedules import KINDS, schedule


def _schedule(args):
    prof = Profile.load(args.profile)
    s = schedule(prof, args.steps, args.kind, args.sigma_min, args.sigma_max)
    if args.json:
        print(json.dumps({"kind": args.kind, "steps": args.steps, "sigmas": s.tolist()}))
    else:
        print(" ".join(f"{v:.6g}" for v in s))


def _info(args):
    print(Profile.load(args.profile).summary())


def _demo(args):
    """Profile an analytic mixture (its exact denoiser), save it and print its schedules."""
    import torch

    from .analytic import GMM
    from .estimate import profile

    gen = torch.Generator().manual_seed(0)
    model = GMM(torch.randn(10, 1, 8, 8, generator=gen), 0.05)
    model.description = "analytic GMM: 10 components in 1x8x8, variance 0.05"
    prof = profile(model, model, samples=args.samples, seed=0)
    os.makedirs(args.out, exist_ok=True)
    path = prof.save(os.path.join(args.out, "profile.npz"))
    print(prof.summary())
    table = {}
    for steps in (8, 16):
        for kind in ("edm", "tangent", "entropic", "rescaled", "las"):
            table[f"{kind}-{steps}"] = schedule(prof, steps, kind).tolist()
            print(f"{kind:>9} {steps:>2}: " + " ".join(f"{v:.4g}" for v in table[f"{kind}-{steps}"]))
    with open(os.path.join(args.out, "schedules.json"), "w") as f:
        json.dump(table, f, indent=1)
    print(f"wrote {path} and {os.path.join(args.out, 'schedules.json')}")


def build_parser():
    p = argparse.ArgumentParser(prog="entropic-fast", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("schedule", help="print the sigmas of a schedule built from a profile")
    s.add_argument("profile")
    s.add_argument("--steps", type=int, required=True)
    s.add_argument("--kind", default="rescaled", choices=KINDS)
    s.add_argument("--sigma-min", type=float)
    s.add_argument("--sigma-max", type=float)
    s.add_argument("--json", action="store_true", help="print a JSON record instead of plain numbers")
    s.set_defaults(run=_schedule)
    i = sub.add_parser("info", help="summarise a profile file")
    i.add_argument("profile")
    i.set_defaults(run=_info)
    d = sub.add_parser("demo", help="profile an analytic model and print its schedules")
    d.add_argument("--out", default="demo_out")
    d.add_argument("--samples", type=int, default=256)
    d.set_defaults(run=_demo)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (InputError, FileNotFoundError) as e:
        print(f"entropic-fast: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
