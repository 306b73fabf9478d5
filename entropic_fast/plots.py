"""Figures (matplotlib, headless): the error curve with its band, the times, the schedules side by side, samples
per schedule, per-frequency rescaled entropic time, schedule bands, and ``ef.compare``'s table. Each returns the
figure and saves it to ``path`` when one is given."""
import numpy as np

from . import curves
from .checks import pyplot
from .errors import InputError
from .schedules import entropic_time, schedule, schedule_band


def radial_bins(shape, bins=None):
    """Radial frequency ``|k|`` of each (H, W) DFT position, and its integer bin index."""
    H, W = shape
    k = np.hypot(*np.meshgrid(np.fft.fftfreq(H, 1 / H), np.fft.fftfreq(W, 1 / W), indexing="ij"))
    bins = bins or int(np.floor(k.max())) + 1
    idx = np.minimum((k / k.max() * (bins - 1) + 0.5).astype(int) if k.max() > 0 else np.zeros_like(k, int),
                     bins - 1)
    return k, idx


def normalised_rescaled_time(prof):
    """Per-direction rescaled time ``R_k(s) / R_k(s_max)``, (sigmas, C, H, W); nan where ``R_k`` stays 0."""
    if not prof.spectral:
        raise InputError("needs a spectral profile: profile(..., spectral=True)")
    n = prof.sigmas.size
    e = prof.spectra.reshape(n, -1).T
    r = curves.cumulative(np.log(prof.sigmas), np.maximum(e, 0) / prof.sigmas)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = r / r[:, -1:]
    return r.T.reshape(prof.spectral_sum.shape)


def spectral_time_figure(prof, steps=16, path=None, bins=None):
    """Normalised rescaled time per channel against radial frequency and sigma, with the spectral, plain
    rescaled and EDM schedules beside it on the same sigma axis. Returns the figure; saves it to ``path``."""
    plt = pyplot()
    r = normalised_rescaled_time(prof)
    C, H, W = r.shape[1:]
    k, idx = radial_bins((H, W), bins)
    nb = idx.max() + 1
    centres = np.array([k[idx == b].mean() for b in range(nb)])
    s = prof.sigmas
    fig, axes = plt.subplots(1, C + 1, figsize=(3.2 * C + 2.6, 3.6), sharey=True,
                             gridspec_kw={"width_ratios": [3] * C + [1.6]}, constrained_layout=True)
    for c in range(C):
        binned = np.stack([np.nanmean(r[:, c][:, idx == b], axis=1) for b in range(nb)], axis=1)
        ax = axes[c]
        mesh = ax.pcolormesh(centres, s, binned, shading="nearest", cmap="viridis", vmin=0, vmax=1)
        ax.contour(centres, s, binned, levels=[0.1, 0.5, 0.9], colors="w", linewidths=0.7)
        ax.set_yscale("log")
        ax.set_xlabel("radial frequency |k|")
        ax.set_title(f"channel {c}")
    axes[0].set_ylabel("sigma")
    fig.colorbar(mesh, ax=axes[:C], label="R_k(s) / R_k(s_max)", shrink=0.9)
    ax = axes[-1]
    for j, (kind, colour) in enumerate([("spectral", "C3"), ("rescaled", "C0"), ("edm", "C7")]):
        sig = schedule(prof, steps, kind)[:-1]
        ax.hlines(sig, j - 0.35, j + 0.35, colors=colour, linewidth=1.2)
    ax.set_xticks(range(3), ["spectral", "rescaled", "edm"], rotation=30)
    ax.set_title(f"{steps} steps")
    ax.set_ylim(s[0] / 1.5, s[-1] * 1.5)
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def schedule_band_figure(prof, steps=16, kinds=("rescaled", "entropic", "las"), path=None, level=0.95):
    """Each kind's sigmas on a log axis with their ``level`` band from the profile's sampling error
    (:func:`entropic_fast.schedules.schedule_band`). Returns the figure; saves it to ``path``."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 0.5 + 0.6 * len(kinds)), constrained_layout=True)
    for row, kind in enumerate(kinds):
        s = schedule(prof, steps, kind)[:-1]
        lo, hi = (b[:-1] for b in schedule_band(prof, steps, kind, level))
        ax.errorbar(s, np.full_like(s, row), xerr=[s - lo, hi - s], fmt="|", ms=12, capsize=3)
    ax.set_xscale("log")
    ax.set_yticks(range(len(kinds)), kinds)
    ax.set_xlabel("sigma")
    ax.set_title(f"{steps}-step schedules, {level:.0%} bands from {int(prof.count.min())} samples per sigma")
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def compare_figure(result, path=None):
    """A comparison (``ef.compare``): Frechet distance against network evaluations, one line per kind (its spread
    over seeds as error bars), one panel per sampler; the matched floor dashed with its two-spread band shaded.
    Returns the figure."""
    plt = pyplot()
    by = {}
    for c in result.cells:
        v = result.distances(c)
        by.setdefault(c.sampler, {}).setdefault(c.kind, []).append((c.evaluations, np.mean(v), np.std(v)))
    fig, axes = plt.subplots(1, len(by), figsize=(4.2 * len(by) + 1.8, 3.8), squeeze=False, sharey=True,
                             constrained_layout=True)
    for ax, (sampler, kinds) in zip(axes[0], by.items()):
        for kind, pts in kinds.items():
            e, m, s = map(np.array, zip(*sorted(pts)))
            ax.errorbar(e, m, yerr=s, marker="o", ms=3, capsize=2, label=kind, linewidth=1.8 if kind in
                        ("rescaled", "entropic", "las", "spectral", "gaussian-optimal") else 1.0)
        r = result.reference
        if r.floor is not None:
            ax.axhline(r.floor, color="k", linestyle="--", linewidth=0.8, label="matched floor (real rows)")
            if r.floor_std:
                ax.axhspan(max(r.floor - 2 * r.floor_std, 1e-9), r.floor + 2 * r.floor_std, color="k", alpha=0.08)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("network evaluations")
        ax.set_title(sampler)
    axes[0][0].set_ylabel("Frechet distance")
    axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    if path is not None:
        fig.savefig(path, dpi=120)
    plt.close(fig)
    return fig


def _done(plt, fig, path):
    if path is not None:
        fig.savefig(path, dpi=120)
        plt.close(fig)
    return fig


def error_curve_figure(prof, path=None, level=0.95):
    """The error per dimension ``e(s) / d`` against sigma (log-log) with its ``level`` band from the standard errors,
    beside the trivial bound ``min(s^2, tr Cov / d)`` where the profile knows the data's spread."""
    from .schedules import normal_quantile, trivial_bound
    plt = pyplot()
    s, m = prof.sigmas, prof.mse / prof.dim
    half = normal_quantile(level) * np.nan_to_num(prof.stderr, posinf=0.0) / prof.dim
    fig, ax = plt.subplots(figsize=(5.5, 3.6), constrained_layout=True)
    ax.fill_between(s, np.maximum(m - half, m * 1e-3), m + half, alpha=0.3, label=f"{level:.0%} band")
    ax.plot(s, m, label="e(s) / d")
    ax.plot(s, trivial_bound(prof) / prof.dim, "k--", linewidth=0.8, label="trivial bound")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("sigma")
    ax.set_ylabel("error per dimension")
    ax.legend()
    return _done(plt, fig, path)


def times_figure(prof, path=None, kinds=("entropic", "rescaled", "spectral", "las")):
    """Each time (normalised to 1 at sigma_max) against sigma; ``spectral`` only for a spectral profile."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.6), constrained_layout=True)
    for kind in kinds:
        if kind == "spectral" and not prof.spectral:
            continue
        t = entropic_time(prof, kind)
        ax.plot(prof.sigmas, t / t[-1], label=kind)
    ax.set_xscale("log")
    ax.set_xlabel("sigma")
    ax.set_ylabel("time / time(sigma_max)")
    ax.legend()
    return _done(plt, fig, path)


def schedules_figure(table, path=None, steps=(8, 16)):
    """Schedules side by side: ``table[kind][str(steps)]`` (sigmas, as ``schedule`` returns them) on a log axis, one
    row per kind, one panel per step count."""
    plt = pyplot()
    kinds = list(table)
    fig, axes = plt.subplots(1, len(steps), figsize=(5 * len(steps), 0.9 + 0.32 * len(kinds)), sharey=True,
                             constrained_layout=True)
    for ax, k in zip(np.atleast_1d(axes), steps):
        for row, kind in enumerate(kinds):
            s = np.asarray(table[kind][str(k)])[:-1]
            ax.plot(s, np.full_like(s, row), "|", ms=14, mew=1.5)
        ax.set_xscale("log")
        ax.set_yticks(range(len(kinds)), kinds)
        ax.set_xlabel("sigma")
        ax.set_title(f"{k} steps")
    return _done(plt, fig, path)


def samples_figure(grids, path=None):
    """Samples per schedule (``{kind: tensor (n, 1, H, W)}`` in [-1, 1], from the same starting noise), a row each."""
    import torch
    plt = pyplot()
    fig, axes = plt.subplots(len(grids), 1, figsize=(8, 1.0 * len(grids) + 0.4), constrained_layout=True)
    for ax, (kind, x) in zip(np.atleast_1d(axes), grids.items()):
        row = torch.cat(list(torch.as_tensor(x)[:, 0].clamp(-1, 1)), dim=1).numpy()
        ax.imshow(row, cmap="gray_r", vmin=-1, vmax=1)
        ax.set_axis_off()
        ax.set_title(kind, fontsize=9, loc="left")
    return _done(plt, fig, path)
