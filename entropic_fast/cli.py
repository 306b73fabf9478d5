"""The ``entropic-fast`` command: schedules from a saved profile, a profile summary, the demo."""
import argparse
import json
import os
import sys

from .errors import InputError
from .profile import Profile
from .schedules import KINDS, schedule


def _schedule(args):
    prof = Profile.load(args.profile)
    s = schedule(prof, args.steps, args.kind, args.sigma_min, args.sigma_max)
    fmt = "json" if args.json else args.format
    if fmt == "json":
        print(json.dumps({"kind": args.kind, "steps": args.steps, "sigmas": s.tolist()}))
    elif fmt == "diffusers":  # what EulerDiscreteScheduler.set_timesteps takes (see adapters.diffusers.to_diffusers)
        print(json.dumps({"sigmas": s.tolist()}))
    elif fmt == "csv":
        print("step,sigma")
        print("\n".join(f"{i},{v!r}" for i, v in enumerate(s.tolist())))
    else:
        print(" ".join(f"{v:.6g}" for v in s))


def _load_factory(spec):
    """``MODULE:FACTORY`` -> the object the factory returns (called with no arguments)."""
    import importlib

    module, _, name = spec.partition(":")
    if not module or not name:
        raise InputError(f"--model must be MODULE:FACTORY, got {spec!r}")
    try:
        factory = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise InputError(f"cannot load {spec!r}: {e}") from None
    return factory()


def _load_data(spec):
    """``digits`` (the bundled training split) or a ``.npy`` file of shape (N, *shape)."""
    import numpy as np
    import torch

    if spec == "digits":
        from .digits import load
        return load("train")[0]
    if not spec.endswith(".npy"):
        raise InputError(f"--data must be 'digits' or a .npy file, got {spec!r}")
    return torch.from_numpy(np.load(spec, allow_pickle=False))


def _profile(args):
    from .estimate import profile
    from .grids import sigma_grid

    lo, hi, n = args.grid
    prof = profile(_load_factory(args.model), _load_data(args.data), sigma_grid(int(n), lo, hi),
                   samples=args.samples, batch_size=args.batch_size, seed=args.seed, spectral=args.spectral,
                   device=args.device, progress=not args.quiet)
    from .estimate import _distributed

    if (_distributed() or (0, 1))[0] != 0:
        return  # under torchrun every rank holds the reduced profile; rank 0 writes it
    prof.meta["command_model"] = args.model
    print(f"wrote {prof.save(args.out)}")
    print(prof.summary())


def _info(args):
    print(Profile.load(args.profile).summary())


def _demo(args):
    """Profile the shipped digits model, write its schedules and figures, print the Frechet table."""
    from .demo import run

    text, seconds = run(args.out, quick=args.quick)
    print(text)
    names = sorted(os.listdir(args.out))
    print(f"done in {seconds:.0f}s; wrote to {os.path.abspath(args.out)}: {', '.join(names)}")


def build_parser():
    p = argparse.ArgumentParser(prog="entropic-fast", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("schedule", help="print the sigmas of a schedule built from a profile")
    s.add_argument("profile")
    s.add_argument("--steps", type=int, required=True)
    s.add_argument("--kind", default="rescaled", choices=KINDS)
    s.add_argument("--sigma-min", type=float)
    s.add_argument("--sigma-max", type=float)
    s.add_argument("--json", action="store_true", help="same as --format json")
    s.add_argument("--format", default="plain", choices=("plain", "json", "diffusers", "csv"))
    s.set_defaults(run=_schedule)
    pr = sub.add_parser("profile", help="profile a model on data and save the profile")
    pr.add_argument("--model", required=True, help="MODULE:FACTORY returning a denoiser(x, sigma)")
    pr.add_argument("--data", required=True, help="'digits' or a .npy file (N, *shape)")
    pr.add_argument("--out", required=True)
    pr.add_argument("--samples", type=int, default=1024)
    pr.add_argument("--grid", type=float, nargs=3, default=(0.002, 80.0, 128), metavar=("SIGMA_MIN", "SIGMA_MAX", "N"))
    pr.add_argument("--spectral", action="store_true")
    pr.add_argument("--batch-size", type=int, default=256)
    pr.add_argument("--seed", type=int, default=0)
    pr.add_argument("--device", default=None)
    pr.add_argument("--quiet", action="store_true", help="no progress bar")
    pr.set_defaults(run=_profile)
    i = sub.add_parser("info", help="summarise a profile file")
    i.add_argument("profile")
    i.set_defaults(run=_info)
    d = sub.add_parser("demo", help="profile the shipped digits model: schedules, figures, Frechet distances")
    d.add_argument("--out", default="demo_out")
    d.add_argument("--quick", action="store_true", help="a small, fast run (a smoke test)")
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
