"""The main job end to end on the shipped digits model: profile, schedules, figures, Frechet distances.

``entropic-fast demo [--out DIR]`` (what ``make demo`` runs after set-up) calls :func:`run`.
"""
import json
import os
import time

import torch

from . import digits, files, kinds, plots, samplers
from .comparison import compare
from .grids import sigma_grid
from .profiling import profile
from .schedules import schedule

KINDS = [k.name for k in kinds.TABLE if k.alias is None and not k.peer]  # ours and the classic ones, once each
FD_KINDS = ["edm", "entropic", "rescaled", "spectral", "las", "gaussian-optimal"]
FD_SAMPLERS = [t.name for t in samplers.TABLE]  # every sampler the table knows


# What each mode runs: (profile samples per sigma, grid points, Frechet kinds, samplers, budgets, samples, seeds).
# "full" is the committed table (benchmarks/results/demo_frechet.md); the default shows the same story (profile,
# schedules, figures, the EDM-vs-rescaled gap and its spread) in under two minutes on 2 cores.
MODES = {
    "quick": (16, 32, FD_KINDS, FD_SAMPLERS, (4,), 200, 1),
    "default": (64, 64, ["edm", "rescaled", "spectral", "gaussian-optimal", "ays-sdxl"], ["ddim", "dpmpp_2m"], (8, 16),
                500, 2),
    "full": (256, 128, FD_KINDS, FD_SAMPLERS, (4, 8, 16), 700, 3),
}


def run(out="demo_out", mode="default", quick=False):
    """Profile the shipped model, write profile, schedules, figures; return the Frechet table as text and the time."""
    mode = "quick" if quick else mode
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    samples, points, fd_kinds, fd_samplers, fd_steps, fd_samples, seeds = MODES[mode]
    t0 = time.time()
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(os.cpu_count() or 1)
    net = digits.denoiser()
    data, _ = digits.load("train")
    # the paper's fixed protocol with the plain mean, as the committed Frechet table was measured
    prof = profile(net, data, sigma_grid(points), samples=samples, batch_size=1024, spectral=True, control=None)
    prof.save(os.path.join(out, "profile.npz"))
    steps = sorted({8, 16, 32, *fd_steps})
    table = {kind: {str(k): schedule(prof, k, kind, **({"data": data} if kinds.get(kind).needs == "covariance" else {})).tolist()
                    for k in steps} for kind in KINDS}
    files.write_text(os.path.join(out, "schedules.json"), json.dumps(table, indent=1))
    plots.error_curve_figure(prof, os.path.join(out, "error_curve.png"))
    plots.times_figure(prof, os.path.join(out, "entropic_times.png"))
    plots.schedules_figure(table, os.path.join(out, "schedules.png"))
    plots.spectral_time_figure(prof, 16, os.path.join(out, "spectral_time.png"))
    noise = torch.randn(12, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    plots.samples_figure({kind: samplers.ddim(net, noise * table[kind]["8"][0], table[kind]["8"]) for kind in KINDS},
                   os.path.join(out, "samples_8steps.png"))
    result = compare(net, digits.load("all")[0], profile=prof, kinds=fd_kinds, steps=fd_steps, samplers=fd_samplers,
                     samples=fd_samples, seeds=seeds, progress=True)
    text = result.markdown()
    files.write_text(os.path.join(out, "frechet.md"), text)
    result.figure(os.path.join(out, "frechet.png"))
    return text, time.time() - t0
