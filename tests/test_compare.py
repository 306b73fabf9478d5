"""ef.compare and `entropic-fast compare`: cells at equal evaluations, samples that do not depend on the batch, the
rank count or an interruption, the metric against its closed form, statistics files, images, and bad input."""
import json
import os
import signal

import numpy as np
import pytest
import torch

import entropic_fast as ef
from entropic_fast import comparison as cmp
from entropic_fast import metrics
from entropic_fast.checkpoint import CheckpointMismatch
from entropic_fast.options import Throughput
from entropic_fast.cli import main
from entropic_fast.errors import InputError, Interrupted

GAUSS = ef.analytic.Gaussian(0.25, (1, 2, 2))
REF = GAUSS.sample(3000, generator=torch.Generator().manual_seed(1))
FLAT = lambda x: x.flatten(1)  # noqa: E731


@pytest.fixture
def sigint():
    """SIGINT raising KeyboardInterrupt, as in a terminal: a process started in the background by a
    non-interactive shell inherits SIGINT ignored, and an ignored signal stays ignored (signals.py)."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


def run(**kw):
    args = dict(reference=REF, kinds=["edm", "exponential"], steps=[4], samplers=["ddim"], samples=150, seeds=1,
                features=FLAT, progress=False)
    args.update(kw)
    return ef.compare(GAUSS, args.pop("reference"), **args)


def test_cells_spend_equal_evaluations():
    cells = cmp._cells(["edm"], [8, 15], ["ddim", "heun", "dpmpp_2m"])
    assert [(c.sampler, c.budget, c.steps, c.evaluations) for c in cells] == [
        ("ddim", 8, 8, 8), ("ddim", 15, 15, 15), ("heun", 8, 4, 7), ("heun", 15, 8, 15),
        ("dpmpp_2m", 8, 8, 8), ("dpmpp_2m", 15, 15, 15)]


def test_samples_do_not_depend_on_the_batch_size_and_kinds_share_their_noise():
    a = run(batch_size=150, samplers=["ddim", "ddim-stochastic"], kinds=["edm", "karras", "exponential"])
    b = run(batch_size=7, samplers=["ddim", "ddim-stochastic"], kinds=["edm", "karras", "exponential"])
    for c in a.cells:
        np.testing.assert_allclose(a.distances(c), b.distances(c), rtol=1e-9)
        same = cmp.Cell(c.sampler, c.budget, "karras")  # edm and karras are one schedule: the same samples
        if c.kind == "edm":
            assert a.distances(c) == a.distances(same)
    assert a.distances(a.cells[0]) != a.distances(a.cells[2])  # another schedule, other samples


def test_the_metric_is_the_closed_form_frechet_distance():
    """Exact DDIM on Gaussian data with many steps samples the data: the distance falls to the sampling floor; the
    distance of Gaussians with known moments is the closed form."""
    mu, cov = np.zeros(3), np.diag([1.0, 2.0, 3.0])
    d = metrics.frechet_from_moments(mu + 1, np.diag([4.0, 2.0, 3.0]), mu, cov)
    assert d == pytest.approx(3 * 1.0 + (2 - 1) ** 2, rel=1e-12)  # |dm|^2 + (sqrt 4 - sqrt 1)^2
    fine = run(kinds=["rescaled"], profile=ef.Profile.from_curve(ef.sigma_grid(64), GAUSS.mse(ef.sigma_grid(64)), 4),
               steps=[64], samples=1500)
    assert fine.values[(fine.cells[0], 0)] < 5 * fine.reference.floor + 1e-3


def stats_file(path):
    f = REF.flatten(1).double()
    np.savez(path, mu=f.mean(0).numpy(), sigma=torch.cov(f.T).numpy())
    return str(path)


def _interrupted(kw, checkpoint):
    """``(calls, features)``: a comparison interrupted by SIGINT from the features of its third batch, checkpointed
    at ``checkpoint``; the features count their calls."""
    calls = [0]

    def feats(x):
        calls[0] += 1
        if calls[0] == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return x.flatten(1)
    with pytest.raises(Interrupted):
        run(**kw, features=feats, checkpoint=checkpoint)
    return calls, feats


def test_an_interrupted_comparison_resumes_to_the_same_table(tmp_path, sigint):
    """SIGINT in the middle (from the features of the third batch): the checkpoint holds the finished units, and
    the rerun gives the uninterrupted table."""
    ref = stats_file(tmp_path / "stats.npz")  # the features see the samples only
    kw = dict(reference=ref, shape=(1, 2, 2), samplers=["ddim-stochastic"], batch_size=32)
    whole = run(**kw)
    calls, feats = _interrupted(kw, tmp_path / "c.npz")
    assert np.load(tmp_path / "c.npz")["finished"].size >= 2
    again = run(**kw, features=feats, checkpoint=tmp_path / "c.npz")
    assert calls[0] < 2 * 2 * 5 - 1  # the finished units were not sampled again
    for c in whole.cells:
        np.testing.assert_allclose(again.distances(c), whole.distances(c), rtol=1e-9)
    with pytest.raises(CheckpointMismatch, match="another comparison"):
        run(**{**kw, "samples": 100}, features=feats, checkpoint=tmp_path / "c.npz")


@pytest.mark.parametrize("damage, match", [
    (lambda a: a.pop("finished"), r"missing \['finished'\]"),
    (lambda a: a.update(finished=np.concatenate([a["finished"], a["finished"][:1]])), "a work id twice"),
    (lambda a: a.update(finished=np.array([10**6])), "outside this run's share"),
    (lambda a: a.update(count=a["count"] + 1), "but its finished units hold"),
    (lambda a: a.update(sum=np.full_like(a["sum"], np.nan)), "non-finite"),
])
def test_a_damaged_comparison_checkpoint_is_refused_with_the_profiles_checks(tmp_path, sigint, damage, match):
    """Issue 40: compare resumes through the checks a profile's checkpoint gets (arrays, finished ids, counts)."""
    kw = dict(reference=stats_file(tmp_path / "stats.npz"), shape=(1, 2, 2), samplers=["ddim-stochastic"],
              batch_size=32)
    _, feats = _interrupted(kw, tmp_path / "c.npz")
    with np.load(tmp_path / "c.npz") as z:
        arrays = {k: z[k] for k in z.files}
    damage(arrays)
    np.savez(tmp_path / "c.npz", **arrays)
    with pytest.raises(CheckpointMismatch, match=match):
        run(**kw, features=feats, checkpoint=tmp_path / "c.npz")


def test_a_statistics_file_gives_the_data_s_distances_and_is_never_unpickled(tmp_path):
    by_data, by_file = run(), run(reference=stats_file(tmp_path / "stats.npz"), shape=(1, 2, 2))
    for c in by_data.cells:
        assert by_file.distances(c) == pytest.approx(by_data.distances(c), rel=1e-7)
    assert by_file.reference.floor is None
    np.savez(tmp_path / "nomu.npz", sigma=np.eye(4))
    np.savez(tmp_path / "wide.npz", mu=np.zeros(5), sigma=np.eye(5))
    np.savez(tmp_path / "pickle.npz", mu=np.array([object()], dtype=object), sigma=np.eye(1))
    for name, match in (("nomu", "has no mu"), ("wide", "features give 4 values"), ("pickle", "not a readable")):
        with pytest.raises(InputError, match=match):
            run(reference=str(tmp_path / f"{name}.npz"), shape=(1, 2, 2))


@pytest.mark.parametrize("change, match", [
    (dict(kinds=["cosine"]), "unknown schedule kind 'cosine'"),
    (dict(steps=[1]), "steps must be"),
    (dict(samplers=["euler_a"]), "unknown sampler 'euler_a'"),
    (dict(features=lambda x: x.flatten(1) * np.nan), "features returned non-finite values"),
    (dict(features=lambda x: x.sum()), "features must return a"),
    (dict(reference=torch.zeros(10, 3)), r"reference's rows have shape \(3,\), the model's samples \(1, 2, 2\)"),
    (dict(kinds=["rescaled"]), "kind 'rescaled' needs the model's profile"),
    (dict(kinds=["rescaled"], profile=ef.Profile.from_curve([0.1, 1.0], [0.0, 0.0], 4)),
     "kind 'rescaled' for ddim at 4 steps: .*zero"),
    (dict(features=None), "give features="),
    (dict(seeds=[]), "seeds must be one or more distinct"),
    (dict(seeds=[1, 1]), "seeds must be one or more distinct"),
    (dict(seeds=[0.5]), "seeds must be whole numbers"),
    (dict(seeds=[2**64]), "seeds must be whole numbers"),
    (dict(seeds=[-1]), "seeds must be whole numbers"),
    (dict(kinds=["edm", "edm"]), "kinds repeats a name"),
    (dict(kinds=None), "compare needs kinds and samplers"),
    (dict(save_images=True), "save_images=True needs out="),
    (dict(kinds=["rescaled"], profile=ef.Profile.from_curve(ef.sigma_grid(8), ef.sigma_grid(8), 9)),
     "profile is of data of dimension 9"),
])
def test_bad_input_is_named(change, match):
    kw = dict(change)
    if "reference" in kw:
        kw["shape"] = (1, 2, 2)
    with pytest.raises(InputError, match=match):
        run(**kw)


def test_outputs_the_table_json_figure_and_images(tmp_path):
    r = run(out=tmp_path, save_images=True, samples=40, steps=[4, 8])
    table = (tmp_path / "compare.md").read_text()
    assert "| ddim | 4 | 4 |" in table and "| ddim | 8 | 8 |" in table and table.count("**") == 4
    rec = json.loads((tmp_path / "compare.json").read_text())
    assert len(rec["cells"]) == 4 and len(rec["cells"][0]["frechet"]) == 1 and rec["floor"] > 0
    assert (tmp_path / "compare.png").stat().st_size > 0
    from PIL import Image  # a test extra
    img = np.asarray(Image.open(tmp_path / "images" / "ddim_4_edm" / "seed0" / "000007.png"))
    assert img.shape == (2, 2) and img.dtype == np.uint8
    assert len(os.listdir(tmp_path / "images" / "ddim_8_exponential" / "seed0")) == 40


def test_the_command_line_compares_the_digits_model(tmp_path, capsys):
    out = tmp_path / "cmp"
    code = main(["compare", "--model", "entropic_fast.digits:denoiser", "--reference", "digits", "--kinds", "edm",
                 "beta", "--steps", "4", "--samplers", "ddim", "--samples", "64", "--out", str(out), "--quiet"])
    assert code == 0 and (out / "compare.md").exists()
    assert "| ddim | 4 | 4 |" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:  # argparse refuses an unknown kind by its choices
        main(["compare", "--model", "entropic_fast.digits:denoiser", "--reference", "digits", "--kinds", "cosine",
              "--out", str(out)])
    assert e.value.code == 2


def test_torchrun_two_processes_equal_one_and_only_rank0_writes(tmp_path):
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29519",
           os.path.join(root, "examples", "torchrun_compare.py"), "--out", str(tmp_path / "cmp")]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(os.listdir(tmp_path / "cmp")) == ["compare.json", "compare.md", "compare.png"]
    ranks = json.loads((tmp_path / "cmp" / "compare.json").read_text())["cells"]
    one = run(kinds=["edm", "exponential"], steps=[4, 8], samplers=["ddim", "ddim-stochastic"], samples=200, seeds=2)
    for rec, cell in zip(ranks, one.cells):
        np.testing.assert_allclose(rec["frechet"], one.distances(cell), rtol=1e-9)


def test_labels_go_to_the_samples_by_index():
    """Sample i of a conditional model gets labels[i % len(labels)], at every evaluation."""
    seen = []

    def den(x, sigma, labels):
        seen.append(labels.clone())
        return GAUSS(x, sigma)
    ef.compare(den, REF, kinds=["edm"], steps=[4], samplers=["ddim"], samples=12, features=FLAT, progress=False,
               labels=torch.arange(5), batch_size=5)
    counts = torch.bincount(torch.cat(seen), minlength=5).tolist()
    assert counts == [4 * sum(1 for i in range(12) if i % 5 == k) for k in range(5)]


def test_seeds_are_independent_streams():
    """Seed 1's starting noise is not seed 0's first stochastic draw (it was: key ``seed * C + draw``): the samples
    of two seeds through a stochastic step of a zero denoiser are uncorrelated."""
    zero = lambda x, sigma: 0.5 * x  # noqa: E731  linear: each sample mixes its start noise and its draws
    ref = torch.randn(4000, 1, 2, 2, generator=torch.Generator().manual_seed(3))
    job, _, _ = cmp._job(zero, ref, None, kinds_=["edm"], steps=[3], samplers_=["ddim-stochastic"], samples=4000,
                         seeds=2, features=FLAT, labels=None, shape=None, out=None, save_images=False,
                         sigma_min=0.5, sigma_max=1.0, throughput=Throughput(4000, "cpu"))
    run_ = cmp.Run(job, 4)
    rows = np.arange(4000)
    a, b = (run_.generate(g, rows).flatten() for g in (0, 1))
    assert abs(float(torch.corrcoef(torch.stack([a, b]))[0, 1])) < 0.05


def test_the_floor_is_matched_to_a_cell_and_has_a_spread():
    """The floor is what as many real rows as a cell has score against the reference: lower for more samples, with
    its spread over draws, and the table marks the rows within it."""
    small, large = run(samples=150), run(samples=1500)
    assert small.reference.floor_rows == 150 and small.reference.floor_std > 0
    assert large.reference.floor < small.reference.floor
    assert "Matched floor (150 real rows" in small.markdown()


def test_rows_where_every_kind_runs_one_schedule_are_left_out():
    r = run(samplers=["heun", "ddim"], steps=[3], kinds=["edm", "exponential"])
    text = r.markdown()
    assert "Left out, every kind giving the same schedule: heun at 3" in text
    assert "| heun |" not in text and "| ddim | 3 |" in text


def test_same_ends_puts_every_kind_on_the_interval_ours_choose():
    prof = ef.Profile.from_curve(ef.sigma_grid(64), GAUSS.mse(ef.sigma_grid(64)), 4)
    r = run(kinds=["rescaled", "kl_optimal"], profile=prof, same_ends=True, samples=64)
    ours, peer = (r.schedules[c] for c in r.cells)
    assert (ours[0], ours[-2]) == pytest.approx((peer[0], peer[-2])) and ours[0] < 80.0


@pytest.mark.parametrize("where", ["file", "under a file"])
def test_an_unwritable_out_is_refused_before_any_sample(tmp_path, where):
    """compare(out=...) checks the folder first: it never samples everything, then fails (issue 39)."""
    calls = []

    def counting(x, sigma):
        calls.append(1)
        return GAUSS(x, sigma)
    out = tmp_path / "out"
    out.write_text("x")
    if where == "under a file":
        out = out / "deeper"
    with pytest.raises(InputError, match="out"):
        ef.compare(counting, REF, kinds=["edm"], steps=[4], samplers=["ddim"], samples=8, features=FLAT,
                   progress=False, out=str(out))
    assert calls == []


def test_a_resume_with_other_features_of_the_same_name_is_refused(tmp_path, sigint):
    """Two feature maps under one name would mix in one table: the features are fingerprinted, not named."""
    kw = dict(reference=stats_file(tmp_path / "stats.npz"), shape=(1, 2, 2), samplers=["ddim"], batch_size=32,
              checkpoint=tmp_path / "c.npz")

    net, calls = torch.nn.Linear(4, 4), [0]

    def learned(x):
        calls[0] += 1
        if calls[0] == 2:
            os.kill(os.getpid(), signal.SIGINT)
        return net(x.flatten(1)).detach()
    with pytest.raises(Interrupted):
        run(**kw, features=learned)
    with torch.no_grad():
        net.weight.mul_(2)  # the same function, other weights
    with pytest.raises(CheckpointMismatch, match="another comparison"):
        run(**kw, features=learned)
    with torch.no_grad():
        net.weight.div_(2)  # the weights it began with: it resumes
    assert run(**kw, features=learned).cells


@pytest.mark.parametrize("case, match", [
    ("one row", "at least 2 rows"), ("nan labels", "labels must be finite"), ("empty labels", "one or more"),
    ("truncated stats", "not a readable statistics file"), ("complex stats", "complex128, not real"),
    ("negative stats", "negative eigenvalue"),
])
def test_bad_references_and_labels_are_named(tmp_path, case, match):
    path = stats_file(tmp_path / "stats.npz")
    if case == "truncated stats":
        data = open(path, "rb").read()
        path = tmp_path / "cut.npz"
        path.write_bytes(data[: len(data) // 2])
    elif case in ("complex stats", "negative stats"):
        path = tmp_path / "bad.npz"
        np.savez(path, mu=np.zeros(4), sigma=np.eye(4) * (1j if case == "complex stats" else -1.0))
    kw = {"one row": dict(reference=REF[:1]),
          "nan labels": dict(labels=torch.full((8,), float("nan"))),
          "empty labels": dict(labels=torch.zeros(0))}.get(case, dict(reference=str(path), shape=(1, 2, 2)))
    with pytest.raises(InputError, match=match):
        run(**kw)
