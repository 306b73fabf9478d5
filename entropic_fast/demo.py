"""The main job end to end on the shipped digits model: profile, schedules, figures, Frechet distances.

``entropic-fast demo [--out DIR]`` (what ``make demo`` runs after set-up) calls :func:`run`.
"""
import json
import os
import time

import numpy as np
import torch

from . import digits, files, kinds, plots, samplers
from .comparison import compare
from .profiling import profile
from .schedules import entropic_time, schedule

KINDS = [k.name for k in kinds.TABLE if k.alias is None and not k.peer]  # ours and the classic ones, once each
FD_KINDS = ["edm", "entropic", "rescaled", "spectral", "las", "gaussian-optimal"]
FD_SAMPLERS = ["ddim", "ddim-stochastic", "heun", "dpmpp_2m"]


def _plt():
    from .checks import pyplot
    return pyplot()


def times_figure(prof, path):
    """Normalised entropic, rescaled, spectral and LAS times against sigma."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.6), constrained_layout=True)
    for kind in ("entropic", "rescaled", "spectral", "las"):
        t = entropic_time(prof, kind)
        ax.plot(prof.sigmas, t / t[-1], label=kind)
    ax.set_xscale("log")
    ax.set_xlabel("sigma")
    ax.set_ylabel("time / time(sigma_max)")
    ax.legend()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def schedules_figure(table, path, steps=(8, 16)):
    """Each kind's sigmas on a log axis, one row per kind and step count."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(steps), figsize=(5 * len(steps), 3.4), sharey=True, constrained_layout=True)
    for ax, k in zip(np.atleast_1d(axes), steps):
        for row, kind in enumerate(KINDS):
            s = np.asarray(table[kind][str(k)])[:-1]
            ax.plot(s, np.full_like(s, row), "|", ms=14, mew=1.5)
        ax.set_xscale("log")
        ax.set_yticks(range(len(KINDS)), KINDS)
        ax.set_xlabel("sigma")
        ax.set_title(f"{k} steps")
    fig.savefig(path, dpi=120)
    plt.close(fig)


def samples_figure(grids, path):
    """A grid of samples per schedule, from the same starting noise."""
    plt = _plt()
    fig, axes = plt.subplots(len(grids), 1, figsize=(8, 1.0 * len(grids) + 0.4), constrained_layout=True)
    for ax, (kind, x) in zip(np.atleast_1d(axes), grids.items()):
        row = torch.cat(list(x[:, 0].clamp(-1, 1)), dim=1).numpy()
        ax.imshow(row, cmap="gray_r", vmin=-1, vmax=1)
        ax.set_axis_off()
        ax.set_title(kind, fontsize=9, loc="left")
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(out="demo_out", samples=256, fd_samples=700, seeds=(0, 1, 2), fd_steps=(4, 8, 16), quick=False):
    """Profile the shipped model, write profile, schedules, figures; return the Frechet table as text."""
    if quick:
        samples, fd_samples, seeds, fd_steps = 16, 200, (0,), (4,)
    t0 = time.time()
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(os.cpu_count() or 1)
    net = digits.denoiser()
    data, _ = digits.load("train")
    grid = None if not quick else np.geomspace(0.002, 80.0, 32)
    # the paper's fixed protocol with the plain mean, as the committed Frechet table was measured
    prof = profile(net, data, grid, samples=samples, batch_size=1024, spectral=True, control=None)
    prof.save(os.path.join(out, "profile.npz"))
    steps = sorted({8, 16, 32, *fd_steps})
    table = {kind: {str(k): schedule(prof, k, kind, **({"data": data} if kinds.get(kind).needs == "covariance" else {})).tolist()
                    for k in steps} for kind in KINDS}
    with open(os.path.join(out, "schedules.json"), "w") as f:
        json.dump(table, f, indent=1)
    times_figure(prof, os.path.join(out, "entropic_times.png"))
    schedules_figure(table, os.path.join(out, "schedules.png"))
    plots.spectral_time_figure(prof, 16, os.path.join(out, "spectral_time.png"))
    noise = torch.randn(12, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    samples_figure({kind: samplers.ddim(net, noise * table[kind]["8"][0], table[kind]["8"]) for kind in KINDS},
                   os.path.join(out, "samples_8steps.png"))
    result = compare(net, digits.load("all")[0], profile=prof, kinds=FD_KINDS, steps=fd_steps, samplers=FD_SAMPLERS,
                     samples=fd_samples, seeds=len(seeds), progress=True)
    text = result.markdown()
    files.write_text(os.path.join(out, "frechet.md"), text)
    result.figure(os.path.join(out, "frechet.png"))
    return text, time.time() - t0
