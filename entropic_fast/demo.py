"""The main job end to end on the shipped digits model: profile, schedules, figures, Frechet distances.

``entropic-fast demo [--out DIR]`` (what ``make demo`` runs after set-up) calls :func:`run`.
"""
import json
import os
import time

import numpy as np
import torch
from tqdm.auto import tqdm

from . import digits, metrics, plots, samplers
from .estimate import profile
from .schedules import entropic_time, schedule

KINDS = ["edm", "tangent", "entropic", "rescaled", "spectral", "las", "gaussian-optimal"]
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


def fd_schedule(prof, data, kind, steps, sampler):
    """A schedule of the Frechet table: ``gaussian-optimal`` is the optimum for ``sampler`` itself."""
    opts = {"data": data, "sampler": sampler} if kind == "gaussian-optimal" else {}
    return torch.as_tensor(schedule(prof, steps, kind, **opts), dtype=torch.float32)


def frechet_table(net, prof, data, ref_feats, clf, n, seeds, budgets):
    """Frechet distance (classifier features) of ``n`` samples per cell, for each seed, at equal network
    evaluations: each sampler takes the most steps that fit the budget (Heun spends two per step)."""
    out = {}
    bar = tqdm(total=len(FD_SAMPLERS) * len(budgets) * len(FD_KINDS) * len(seeds), desc="frechet", leave=False)
    for sname in FD_SAMPLERS:
        sampler = samplers.SAMPLERS[sname]
        for budget in budgets:
            k = samplers.steps_within(sname, budget)
            for kind in FD_KINDS:
                sig = fd_schedule(prof, data, kind, k, sname)
                for seed in seeds:
                    g = torch.Generator().manual_seed(seed)
                    x = torch.randn(n, 1, 8, 8, generator=g) * float(sig[0])
                    x = sampler(net, x, sig, generator=g)
                    out.setdefault((sname, budget, kind), []).append(
                        metrics.frechet_distance(digits.features(x, clf), ref_feats))
                    bar.update()
    bar.close()
    return out


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
    table = {kind: {str(k): schedule(prof, k, kind, **({"data": data} if kind == "gaussian-optimal" else {})).tolist()
                    for k in steps} for kind in KINDS}
    with open(os.path.join(out, "schedules.json"), "w") as f:
        json.dump(table, f, indent=1)
    times_figure(prof, os.path.join(out, "entropic_times.png"))
    schedules_figure(table, os.path.join(out, "schedules.png"))
    plots.spectral_time_figure(prof, 16, os.path.join(out, "spectral_time.png"))
    noise = torch.randn(12, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    samples_figure({kind: samplers.ddim(net, noise * table[kind]["8"][0], table[kind]["8"]) for kind in KINDS},
                   os.path.join(out, "samples_8steps.png"))
    clf = digits.classifier()
    all_x, _ = digits.load("all")
    ref = digits.features(all_x, clf)
    floor = metrics.frechet_distance(digits.features(data, clf), digits.features(digits.load("test")[0], clf))
    fd = frechet_table(net, prof, data, ref, clf, fd_samples, seeds, fd_steps)
    lines = [f"Frechet distance of {fd_samples} samples to all 1797 digits (classifier features), mean ± std over "
             f"{len(seeds)} seeds; best per row in bold. Real train vs real test: {floor:.3f}. Rows compare samplers "
             "at equal network evaluations (Heun: 2 per step, Euler on the last); gaussian-optimal is the optimum "
             "for each row's sampler.", "",
             "| sampler | evaluations | steps | " + " | ".join(FD_KINDS) + " |", "| --- " * (len(FD_KINDS) + 3) + "|"]
    for sname in FD_SAMPLERS:
        for budget in fd_steps:
            k = samplers.steps_within(sname, budget)
            vals = [fd[(sname, budget, kind)] for kind in FD_KINDS]
            means = [np.mean(v) for v in vals]
            cells = [f"{np.mean(v):.3f} ± {np.std(v):.3f}" for v in vals]
            if len(set(means)) > 1:  # Heun at 2 steps: every kind gives the same schedule, no winner
                best = int(np.argmin(means))
                cells[best] = f"**{cells[best]}**"
            lines.append(f"| {sname} | {samplers.evaluations(sname, k)} | {k} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(out, "frechet.md"), "w") as f:
        f.write(text)
    return text, time.time() - t0
