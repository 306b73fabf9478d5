"""The ``entropic-fast`` command: schedules from a saved profile, a profile summary, profiling, the demo.

Exit status: 0 done, 2 a usage error (bad arguments, files or input: one line on stderr, no
traceback), 1 a failure while running, 130 on Ctrl-C and 143 on SIGTERM (after the checkpoint,
if one was asked for, is written).
"""
import argparse
import json
import os
import sys

from . import samplers
from .adapters.flow import sigma_to_t
from .errors import InputError, Interrupted
from .profile import Profile
from .schedules import KINDS, schedule, schedule_band


class _Usage(InputError):
    """A command-line usage error."""


def _interval(text):
    """``--interval``: auto, range, or two numbers ``MIN,MAX``."""
    if text in (None, "auto", "range"):
        return text
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise _Usage(f"--interval takes auto, range or MIN,MAX (two numbers), got {text!r}") from None
    return lo, hi


def _schedule(args):
    fmt = args.format
    if args.json:
        if fmt not in ("plain", "json"):
            raise _Usage(f"--json and --format {fmt} ask for two formats: use one of them")
        fmt = "json"
    if args.band and fmt not in ("plain", "json", "csv"):
        raise _Usage("--band goes with the plain, json or csv format")
    prof = Profile.load(args.profile)
    interval = _interval(args.interval)
    kind = args.kind or samplers.get(args.sampler).kind
    s = schedule(prof, args.steps, kind, args.sigma_min, args.sigma_max, sampler=args.sampler, interval=interval)
    lo = hi = None
    if args.band:
        lo, hi = schedule_band(prof, args.steps, kind, args.level, args.sigma_min, args.sigma_max,
                               sampler=args.sampler, interval=interval)
    if fmt == "json":
        rec = {"kind": kind, "sampler": args.sampler, "steps": args.steps, "sigmas": s.tolist()}
        if args.band:
            rec.update(level=args.level, lower=lo.tolist(), upper=hi.tolist())
        print(json.dumps(rec))
    elif fmt == "diffusers":  # what EulerDiscreteScheduler.set_timesteps takes (see adapters.diffusers.to_diffusers)
        print(json.dumps({"sigmas": s.tolist()}))
    elif fmt == "flow":  # flow times t = s / (1 + s), ending in 0: ComfyUI's SIGMAS for flow models
        print(json.dumps({"sigmas": sigma_to_t(s).tolist()}))
    elif fmt == "timesteps":  # continuous VP timesteps of Stable Diffusion's training schedule
        print(json.dumps({"timesteps": _sd_timesteps(s[:-1]).tolist()}))
    elif fmt == "comfyui":  # a comma-separated list, for ComfyUI nodes that read SIGMAS from a string
        print(", ".join(repr(float(v)) for v in s))
    elif fmt == "a1111":  # a snippet registering the profile's scheduler in A1111 / Forge
        print(_a1111_snippet(os.path.abspath(args.profile), kind))
    elif fmt == "csv":
        print("step,sigma" + (",lower,upper" if args.band else ""))
        for i, v in enumerate(s.tolist()):
            print(f"{i},{v!r}" + (f",{float(lo[i])!r},{float(hi[i])!r}" if args.band else ""))
    else:
        print(" ".join(f"{v:.6g}" for v in s))
        if args.band:
            print(" ".join(f"{v:.6g}" for v in lo), f"  (lower, {args.level:.0%})")
            print(" ".join(f"{v:.6g}" for v in hi), f"  (upper, {args.level:.0%})")


def _sd_timesteps(sigmas):
    """Continuous timesteps of ``sigmas`` on Stable Diffusion's schedule (as the VP adapter computes them),
    refused outside its range."""
    import types

    import torch

    from .adapters.diffusers import vp_log_sigmas, continuous_timesteps
    from .peers import sd_alphas_cumprod

    ls = vp_log_sigmas(types.SimpleNamespace(alphas_cumprod=torch.from_numpy(sd_alphas_cumprod())))
    s = torch.as_tensor(sigmas, dtype=torch.float64)
    if float(s.min()) < float(ls[0].exp()) * (1 - 1e-6) or float(s.max()) > float(ls[-1].exp()) * (1 + 1e-6):
        raise _Usage(f"--format timesteps is Stable Diffusion's schedule, sigma {float(ls[0].exp()):.4g} to "
                     f"{float(ls[-1].exp()):.4g}: build the schedule inside it (--sigma-min, --sigma-max)")
    return continuous_timesteps(s, ls).numpy()


def _a1111_snippet(path, kind):
    return (f"# A1111 / Forge: register an entropic_fast scheduler (or install integrations/webui as an extension)\n"
            f"from modules import sd_schedulers\n"
            f"from entropic_fast import Profile\n"
            f"from entropic_fast.adapters.kdiffusion import scheduler\n"
            f"entry = sd_schedulers.Scheduler(\"entropic_{kind}\", \"Entropic ({kind})\", "
            f"scheduler(Profile.load({path!r}), {kind!r}))\n"
            f"sd_schedulers.schedulers.append(entry)  # the dropdown lists labels and passes them back\n"
            f"sd_schedulers.schedulers_map[entry.name] = sd_schedulers.schedulers_map[entry.label] = entry")


def _load_factory(spec):
    """``MODULE:FACTORY`` -> the denoiser the factory returns (called with no arguments)."""
    import importlib

    module, _, name = spec.partition(":")
    if not module or not name:
        raise _Usage(f"--model must be MODULE:FACTORY, got {spec!r}")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # a module in the current folder, as `python -m` would find it
    try:
        factory = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise _Usage(f"cannot load {spec!r}: {e}") from None
    if not callable(factory):
        raise _Usage(f"--model {spec!r} names a {type(factory).__name__}, not a factory function")
    try:
        model = factory()
    except TypeError as e:
        raise _Usage(f"--model {spec!r} must be callable with no arguments: {e}") from None
    if not callable(model):
        raise _Usage(f"--model {spec!r} returned a {type(model).__name__}, not a denoiser(x, sigma)")
    return model


def _load_model(args):
    """``--model``: ``MODULE:FACTORY``, or an EDM/EDM2 pickle (``--code-root``), guided by ``--guide`` / ``--guidance``."""
    pickled = args.model.endswith((".pkl", ".pickle"))
    if not pickled:
        if args.guide is not None or args.guidance != 1.0 or args.code_root is not None:
            raise _Usage("--guide, --guidance and --code-root go with an EDM/EDM2 network pickle as --model")
        return _load_factory(args.model)
    import warnings

    from .adapters import edm

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the pickle warning: the user named the files on the command line
        net = edm.load(args.model, args.code_root, args.device or "cpu")
        guide = None if args.guide is None else edm.load(args.guide, args.code_root, args.device or "cpu")
    if args.guide is None and args.guidance == 1.0:
        return edm.denoiser(net)
    return edm.guided(net, guide, args.guidance)


def _load_data(spec, labels=True):
    """``digits`` (the bundled training split), a ``.npy`` file of shape (N, *shape), or an EDM/EDM2
    dataset folder or zip (images, or EDM2 latents when it holds .npy files)."""
    import numpy as np
    import torch

    if spec == "digits":
        from .digits import load
        return load("train")[0]
    if os.path.isdir(spec) or spec.endswith(".zip"):
        from .data import dataset
        return dataset(spec, labels)
    if not spec.endswith(".npy"):
        raise _Usage(f"--data must be 'digits', a .npy file, or a dataset folder or .zip, got {spec!r}")
    try:
        a = np.load(spec, allow_pickle=False)
    except FileNotFoundError:
        raise _Usage(f"--data {spec}: no such file") from None
    except (OSError, ValueError, EOFError) as e:
        raise _Usage(f"--data {spec} is not a numeric .npy array ({e})") from None
    if not isinstance(a, np.ndarray):
        raise _Usage(f"--data {spec} is an .npz archive posing as .npy: give a single array saved with np.save")
    if a.dtype.kind in "iub":
        raise _Usage(f"--data {spec} holds {a.dtype} (integers): the model sees floats scaled as it was trained, "
                     "for images of 0..255 x / 127.5 - 1 (np.save the scaled float32 array)")
    if a.dtype.kind != "f":
        raise _Usage(f"--data {spec} holds {a.dtype}, not real numbers")
    return torch.from_numpy(a)


def _grid(values):
    from .checks import integer
    from .grids import sigma_grid

    lo, hi, n = values
    try:
        n = integer(n, "--grid N")
    except InputError as e:
        raise _Usage(str(e)) from None
    return sigma_grid(n, lo, hi)


def _profile(args):
    from .estimate import distributed
    from .files import check_writable
    from .profiling import profile

    grid = None if args.grid is None else _grid(args.grid)  # None: the library's default for a fixed or adaptive run
    check_writable(args.out, "--out")
    adaptive_only = {"--steps": args.steps, "--kind": args.kind, "--max-evaluations": args.max_evaluations}
    given = [flag for flag, v in adaptive_only.items() if v is not None]
    if args.samples is not None and given:
        raise _Usage(f"{', '.join(given)} set{'s' if len(given) == 1 else ''} the adaptive run, which --samples "
                     "replaces by a fixed count: drop one or the other")
    count = {"samples": args.samples, "tolerance": args.tolerance}
    if args.samples is None:
        count.update(steps=args.steps or [16], kind=args.kind or ["rescaled"],
                     max_evaluations=131072 if args.max_evaluations is None else args.max_evaluations)
    prof = profile(_load_model(args), _load_data(args.data, not args.no_labels), grid, **count,
                   batch_size=args.batch_size, seed=args.seed, spectral=args.spectral, device=args.device,
                   progress=not args.quiet, checkpoint=args.checkpoint, nonfinite=args.nonfinite,
                   control=None if args.control == "none" else args.control)
    if (distributed() or (0, 1))[0] != 0:
        return  # under torchrun every rank holds the reduced profile; rank 0 writes it
    prof = prof.with_meta(command_model=args.model)
    print(f"wrote {prof.save(args.out)}")
    print(prof.summary())


def _info(args):
    print(Profile.load(args.profile).summary())


def _demo(args):
    """Profile the shipped digits model, write its schedules and figures, print the Frechet table."""
    from .files import check_writable

    out = os.path.abspath(args.out)
    if os.path.exists(out) and not os.path.isdir(out):
        raise _Usage(f"--out {args.out} exists and is not a folder")
    if os.path.isdir(out):
        check_writable(os.path.join(out, "profile.npz"), "--out")
    else:
        check_writable(out, "--out")
    from .demo import run

    if args.quick and args.full:
        raise _Usage("--quick and --full ask for two demos: use one of them")
    text, seconds = run(args.out, "quick" if args.quick else "full" if args.full else "default")
    print(text)
    names = sorted(os.listdir(args.out))
    print(f"done in {seconds:.0f}s; wrote to {out}: {', '.join(names)}")


def _schedule_parser(sub):
    s = sub.add_parser("schedule", help="print the sigmas of a schedule built from a profile")
    s.add_argument("profile", help="a profile file (.npz) from `entropic-fast profile` or Profile.save")
    s.add_argument("--steps", type=int, default=20,
                   help="network evaluations of a first-order sampler (>= 2; default 20, ComfyUI's)")
    s.add_argument("--kind", default=None, choices=KINDS,
                   help="how the steps are spaced (default: the kind that samples best with --sampler, rescaled)")
    s.add_argument("--sampler", default="ddim", choices=samplers.NAMES,
                   help="the sampler that will run the schedule: it sets the interval (default ddim, i.e. Euler)")
    s.add_argument("--interval", default=None,
                   help="where the schedule starts and stops: auto (our kinds' default: chosen from the profile), "
                        "range (the bounds), or MIN,MAX")
    s.add_argument("--sigma-min", type=float, help="the lowest sigma the schedule may use (default the profile's)")
    s.add_argument("--sigma-max", type=float, help="the highest sigma the schedule may use (default the profile's)")
    s.add_argument("--json", action="store_true", help="same as --format json")
    s.add_argument("--format", default="plain",
                   choices=("plain", "json", "csv", "diffusers", "flow", "timesteps", "comfyui", "a1111"),
                   help="diffusers: {sigmas} for set_timesteps; flow: flow times t = s/(1+s); timesteps: continuous "
                        "timesteps of Stable Diffusion's schedule; comfyui: a comma-separated list; a1111: a "
                        "snippet registering the scheduler")
    s.add_argument("--band", action="store_true",
                   help="also the confidence band of each sigma from the profile's sampling error")
    s.add_argument("--level", type=float, default=0.95, help="confidence level of --band (default 0.95)")
    s.set_defaults(run=_schedule)


def _model_arguments(pr):
    _network_arguments(pr)
    pr.add_argument("--data", required=True,
                    help="'digits', a .npy file (N, *shape), or an EDM/EDM2 dataset folder or .zip (images, "
                         "or EDM2 latents)")
    pr.add_argument("--no-labels", action="store_true", help="ignore a dataset's labels (unconditional model)")


def _network_arguments(pr):
    pr.add_argument("--model", required=True,
                    help="MODULE:FACTORY returning a denoiser(x, sigma) (MODULE may sit in the current folder), or "
                         "an EDM/EDM2 network pickle (.pkl)")
    pr.add_argument("--code-root", default=None, help="checkout of NVlabs/edm2 (or edm) that a .pkl model needs")
    pr.add_argument("--guide", default=None, help="guiding network pickle (autoguidance) for a .pkl model")
    pr.add_argument("--guidance", type=float, default=1.0,
                    help="guidance weight w of D_g + w (D - D_g); without --guide, the model's unconditional branch")


def _profile_parser(sub):
    pr = sub.add_parser("profile", help="profile a model on data and save the profile")
    _model_arguments(pr)
    pr.add_argument("--out", required=True, help="the profile file to write (.npz)")
    pr.add_argument("--samples", type=int, default=None,
                    help="a fixed number of samples per sigma (the paper: 1024); without it the run is adaptive")
    pr.add_argument("--tolerance", type=float, default=None,
                    help="adaptive: stop when every inner sigma's 95%% band is within +-TOLERANCE relative (default "
                         "0.03; 0.01 takes about six times the evaluations) for the --steps/--kind schedule")
    pr.add_argument("--steps", type=int, nargs="+", help="adaptive: the schedule(s) the band must hold for (default 16)")
    pr.add_argument("--kind", nargs="+", help="adaptive: the schedule kind(s) (default rescaled)")
    pr.add_argument("--max-evaluations", type=int, help="adaptive: the budget of denoiser rows (default 131072)")
    pr.add_argument("--control", choices=("auto", "wiener", "local", "both", "none"), default="auto",
                    help="control variates: the data's Wiener denoiser, per-cluster ones, or both (auto: both, for "
                         "data rows of at most 1024 values, kept after an adaptive run's pilot only where they "
                         "shorten the wall time to the tolerance)")
    pr.add_argument("--grid", type=float, nargs=3, default=None, metavar=("SIGMA_MIN", "SIGMA_MAX", "N"),
                    help="the sigma grid: N points from SIGMA_MIN to SIGMA_MAX, EDM's rho=7 spacing (default 0.002 "
                         "80 32 for an adaptive run, 0.002 80 128 with --samples)")
    pr.add_argument("--spectral", action="store_true", help="also the error power per channel and frequency")
    pr.add_argument("--batch-size", type=int, default=256, help="rows per network call (default 256)")
    pr.add_argument("--seed", type=int, default=0, help="the seed of every draw (default 0)")
    pr.add_argument("--nonfinite", choices=("raise", "skip"), default="raise",
                    help="a non-finite denoiser output stops the run (raise), or is dropped and counted (skip)")
    pr.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: the model's)")
    pr.add_argument("--checkpoint", default=None,
                    help="save progress here (and on Ctrl-C or SIGTERM); a rerun with the same arguments resumes")
    pr.add_argument("--quiet", action="store_true", help="no progress bar")
    pr.set_defaults(run=_profile)


def _compare(args):
    from .comparison import compare
    from .files import check_writable

    check_writable(os.path.join(args.out, "compare.md") if os.path.isdir(args.out) else args.out, "--out")
    ref = args.reference if args.reference.endswith(".npz") else _load_data(args.reference, False)
    features = None if args.features is None else _load_factory(args.features)
    result = compare(_load_model(args), ref, profile=args.profile, kinds=args.kinds, steps=args.steps,
                     samplers=args.samplers, samples=args.samples, seeds=args.seeds, features=features,
                     shape=args.shape, out=args.out, checkpoint=args.checkpoint, save_images=args.save_images,
                     batch_size=args.batch_size, device=args.device, sigma_min=args.sigma_min,
                     sigma_max=args.sigma_max, progress=not args.quiet, same_ends=args.same_ends)
    print(result.markdown())
    print(f"wrote {os.path.abspath(args.out)}: compare.md, compare.json, compare.png"
          + (", images/" if args.save_images else ""))


def _compare_parser(sub):
    from .comparison import DEFAULT_KINDS

    c = sub.add_parser("compare", help="benchmark schedules on your model: Frechet distance at equal evaluations")
    _network_arguments(c)
    c.add_argument("--reference", required=True,
                   help="what samples are compared with: 'digits', a .npy file, a dataset folder or .zip, or a "
                        "statistics file (.npz with mu and sigma, as pytorch-fid and clean-fid write)")
    c.add_argument("--profile", default=None, help="the model's profile (.npz): our kinds need it")
    c.add_argument("--kinds", nargs="+", default=list(DEFAULT_KINDS), choices=KINDS, metavar="KIND",
                   help=f"the schedules to compare (default {' '.join(DEFAULT_KINDS)}; any of {', '.join(KINDS)})")
    c.add_argument("--steps", type=int, nargs="+", default=[8, 16, 32],
                   help="network-evaluation budgets (default 8 16 32): each sampler takes the steps that fit")
    c.add_argument("--samplers", nargs="+", default=["ddim", "heun"], choices=samplers.NAMES,
                   help="the samplers (default ddim heun; euler is ddim, euler_ancestral ddim-stochastic)")
    c.add_argument("--same-ends", action="store_true",
                   help="every kind on the interval ours choose (the control that separates interval and spacing)")
    c.add_argument("--samples", type=int, default=10000, help="samples per cell and seed (default 10000)")
    c.add_argument("--seeds", type=int, default=1, help="seeds per cell: the table gives mean ± std (default 1)")
    c.add_argument("--features", default=None,
                   help="MODULE:FACTORY returning a callable from samples to (rows, width) features (default: the "
                        "digits classifier's, for 8x8 digits)")
    c.add_argument("--shape", type=int, nargs="+", default=None, help="one sample's shape (needed with a statistics file)")
    c.add_argument("--out", required=True, help="the folder for compare.md, compare.json, compare.png (and images/)")
    c.add_argument("--save-images", action="store_true",
                   help="also write every sample as PNG, one folder per cell and seed, for your own FID tool")
    c.add_argument("--checkpoint", default=None, help="save progress here; a rerun with the same arguments resumes")
    c.add_argument("--batch-size", type=int, default=256, help="samples per sampler call (default 256)")
    c.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: the model's)")
    c.add_argument("--sigma-min", type=float, default=0.002, help="without --profile: the smallest sigma (0.002)")
    c.add_argument("--sigma-max", type=float, default=80.0, help="without --profile: the largest sigma (80)")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    c.set_defaults(run=_compare)


def _tune(args):
    from .tuning import SPACINGS, tune

    out = args.out or args.profile
    from .files import check_writable
    check_writable(out, "--out")
    ref = _load_data(args.reference, False)
    features = None if args.features is None else _load_factory(args.features)
    result = tune(_load_model(args), ref, args.profile, args.sampler, args.steps, kind=args.kind,
                  samples=args.samples, seeds=args.seeds, features=features, checkpoint=args.checkpoint,
                  spacings=SPACINGS if args.spacings is None else args.spacings,
                  batch_size=args.batch_size, device=args.device, progress=not args.quiet)
    result.profile.save(out)
    print(result.markdown())
    print(f"wrote {out}: `entropic-fast schedule {out} --sampler {args.sampler} --steps "
          f"{samplers.steps_within(args.sampler, args.steps)}` and the clients now use the tuned interval and "
          "spacing")


def _tune_parser(sub):
    t = sub.add_parser("tune", help="search where a schedule starts and stops on your model (Frechet distance)")
    _network_arguments(t)
    t.add_argument("--profile", required=True,
                   help="the model's profile (.npz); the tuned interval and spacing go into it")
    t.add_argument("--reference", required=True, help="data to score against: 'digits', a .npy file, a folder or .zip")
    t.add_argument("--sampler", default="ddim", choices=samplers.NAMES, help="the sampler you run (default ddim)")
    t.add_argument("--steps", type=int, default=8, help="network-evaluation budget (default 8)")
    t.add_argument("--kind", default=None, choices=KINDS, help="the spacing (default: the sampler's best)")
    t.add_argument("--samples", type=int, default=1024, help="samples per candidate interval (default 1024)")
    t.add_argument("--seeds", type=int, default=1, help="seeds per candidate (default 1)")
    t.add_argument("--features", default=None, help="MODULE:FACTORY of a feature callable (default: digits')")
    t.add_argument("--spacings", nargs="*", default=None, choices=KINDS, metavar="KIND",
                   help="kinds scored on the best interval (default: edm and exponential; none given: the interval "
                        "alone)")
    t.add_argument("--out", default=None, help="where to write the tuned profile (default: over --profile)")
    t.add_argument("--checkpoint", default=None, help="save progress here; a rerun with the same arguments resumes")
    t.add_argument("--batch-size", type=int, default=256, help="samples per sampler call (default 256)")
    t.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: the model's)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(run=_tune)


def _version():
    """The installed package's version (its metadata: what pip installed)."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("entropic_fast")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser():
    p = argparse.ArgumentParser(prog="entropic-fast", description=__doc__.split("\n")[0].replace("``", ""))
    p.add_argument("--version", action="version", version=f"entropic-fast {_version()}")
    sub = p.add_subparsers(dest="command", required=True)
    _schedule_parser(sub)
    _profile_parser(sub)
    _compare_parser(sub)
    _tune_parser(sub)
    i = sub.add_parser("info", help="summarise a profile file")
    i.add_argument("profile", help="a profile file (.npz)")
    i.set_defaults(run=_info)
    d = sub.add_parser("demo", help="profile the shipped digits model: schedules, figures, Frechet distances")
    d.add_argument("--out", default="demo_out", help="the folder for the profile, schedules and figures")
    d.add_argument("--quick", action="store_true", help="a small, fast run (a smoke test)")
    d.add_argument("--full", action="store_true",
                   help="the full Frechet table (6 kinds, 4 samplers, 3 budgets, 3 seeds; several minutes)")
    d.set_defaults(run=_demo)
    return p


def _quiet_stdout():
    """After a broken pipe: point stdout at /dev/null so that the interpreter's final flush stays silent."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
        sys.stdout.flush()
    except BrokenPipeError:  # `entropic-fast schedule ... | head`: the reader left, nothing to report
        _quiet_stdout()
        return 141
    except Interrupted as e:
        from .signals import exit_code
        print(f"entropic-fast: interrupted by signal {e.signum}", file=sys.stderr)
        return exit_code(e.signum)
    except KeyboardInterrupt:
        print("entropic-fast: interrupted", file=sys.stderr)
        return 130
    except (InputError, FileNotFoundError, IsADirectoryError, PermissionError) as e:
        print(f"entropic-fast: error: {e}", file=sys.stderr)
        return 2
    except ImportError as e:  # a missing extra: the message names the install command
        print(f"entropic-fast: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"entropic-fast: failed: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
