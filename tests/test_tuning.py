"""ef.tune and `entropic-fast tune`: the interval searched on the model, written into the profile that
ef.schedule and the clients read; resumable; its cost said up front."""
import numpy as np
import pytest
import torch

import entropic_fast as ef
from entropic_fast import tuning
from entropic_fast.cli import main

GAUSS = ef.analytic.Gaussian(0.25, (1, 2, 2))
REF = GAUSS.sample(2000, generator=torch.Generator().manual_seed(1))
GRID = ef.sigma_grid(64)
PROF = ef.Profile.from_curve(GRID, GAUSS.mse(GRID), 4)
FLAT = lambda x: x.flatten(1)  # noqa: E731


def tune(**kw):
    args = dict(samples=192, features=FLAT, progress=False, batch_size=512)
    args.update(kw)
    return ef.tune(GAUSS, REF, PROF, "ddim", 4, **args)


def test_the_best_candidate_is_written_into_the_profile_and_schedule_uses_it(tmp_path):
    r = tune()
    fds = [c[2] for c in r.candidates]
    assert r.best[2] == min(fds) and r.rule == r.candidates[0] and len(r.candidates) > 15
    assert r.meta["evaluations"] == (len(r.candidates) + len(tuning.SPACINGS)) * 192 * 4  # then the spacings
    s = ef.schedule(r.profile, 4, sampler="ddim")
    assert (s[-2], s[0]) == pytest.approx(r.best[:2])
    np.testing.assert_array_equal(ef.schedule(r.profile, 5), ef.schedule(PROF, 5))  # another budget: the rule
    path = tmp_path / "tuned.npz"
    r.profile.save(path)
    np.testing.assert_array_equal(ef.schedule(ef.Profile.load(path), 4), s)
    narrow = ef.schedule(r.profile, 4, sigma_min=0.002, sigma_max=r.best[1] / 2)  # bounds still bound
    assert narrow[0] <= r.best[1] / 2


def test_tuning_draws_noise_no_comparison_draws():
    assert min(tune(samples=64).candidates[0][:2]) > 0
    assert tuning.SEED_BASE > 10**5


def test_an_interrupted_search_resumes_from_its_checkpoint(tmp_path):
    ck = str(tmp_path / "t.ckpt")
    first = tune(checkpoint=ck)
    again = tune(checkpoint=ck)  # every unit finished: nothing is generated twice, the same table
    assert [c[2] for c in again.candidates] == [c[2] for c in first.candidates]
    assert again.spacings == first.spacings and (tmp_path / "t.ckpt.spacing").exists()


def test_the_best_spacing_on_the_best_interval_is_written_and_schedule_spaces_with_it():
    r = tune()
    names = [k for k, _ in r.spacings]
    assert names == ["rescaled", *tuning.SPACINGS] and r.spacings[0][1] == r.best[2]  # the same noise: paired
    assert r.meta["spacing"] == min(r.spacings, key=lambda c: c[1])[0]
    a, b = r.best[:2]
    for name in ("edm", "exponential", "rescaled"):
        prof = PROF.with_meta(tuned={"ddim/4/rescaled": {"interval": [a, b], "spacing": name}})
        np.testing.assert_array_equal(ef.schedule(prof, 4, sampler="ddim"),
                                      ef.schedule(PROF, 4, name, sampler="ddim", interval=(a, b)))
        np.testing.assert_array_equal(ef.schedule(prof, 4, interval="range"), ef.schedule(PROF, 4, interval="range"))
        np.testing.assert_array_equal(ef.schedule(prof, 4, "entropic"), ef.schedule(PROF, 4, "entropic"))
        lower, upper = ef.schedule_band(prof, 4, sampler="ddim")  # the band of the schedule as it is spaced
        np.testing.assert_allclose(lower, ef.schedule(prof, 4, sampler="ddim"), rtol=1e-12)
    calls = []

    def counted(x, sigma, labels=None):
        calls.append(len(x))
        return GAUSS(x, sigma)
    with pytest.raises(ef.InputError, match="spectral"):  # a plain profile: refused before any sample is drawn
        ef.tune(counted, REF, PROF, "ddim", 4, samples=64, features=FLAT, progress=False, spacings=("spectral",))
    assert calls == []
    alone = tune(spacings=())
    assert alone.spacings == [("rescaled", alone.best[2])] and alone.meta["spacing"] == "rescaled"


def test_the_command_line_tunes_and_the_schedule_command_reads_it(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    PROF.save(tmp_path / "p.npz")
    np.save(tmp_path / "x.npy", REF.numpy())
    (tmp_path / "gm.py").write_text("import entropic_fast as ef\n"
                                    "def factory():\n    return ef.analytic.Gaussian(0.25, (1, 2, 2))\n"
                                    "def flat():\n    return lambda x: x.flatten(1)\n")
    assert main(["tune", "--model", "gm:factory", "--profile", "p.npz", "--reference", "x.npy", "--features",
                 "gm:flat", "--steps", "4", "--samples", "64", "--out", "t.npz", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "Tuning ddim/4/rescaled" in out and "best" in out
    assert main(["schedule", "t.npz", "--steps", "4", "--format", "json"]) == 0
    tuned = ef.Profile.load(tmp_path / "t.npz").meta["tuned"]["ddim/4/rescaled"]["interval"]
    assert f"{tuned[1]:.6g}"[:5] in capsys.readouterr().out


def _exact_ddim_frechet(sigmas, var):
    """W2^2 between N(0, var I) data and DDIM's output through ``sigmas`` with the exact denoiser, written with
    the per-step factor ``x <- D + (s'/s)(x - D)``, ``D = var / (var + s^2) x`` (Euler on the probability-flow ODE)."""
    amp = 1.0
    for s, t in zip(sigmas[:-1], sigmas[1:]):
        shrink = var / (var + s**2)
        amp *= shrink + (t / s) * (1 - shrink)
    return GAUSS.dim * (abs(amp) * sigmas[0] - var**0.5) ** 2


def test_the_score_ranks_the_candidates_as_the_exact_distance_does():
    from scipy.stats import spearmanr
    r = tune(samples=1024)  # the default
    exact = [_exact_ddim_frechet(ef.schedule(PROF, 4, sampler="ddim", interval=(a, b)), 0.25)
             for a, b, _ in r.candidates]
    assert spearmanr([c[2] for c in r.candidates], exact)[0] > 0.9
    assert exact[r.candidates.index(r.best)] <= sorted(exact)[2]  # the pick among the three best
