"""Docs that cannot rot (issue 31): every code block of the README and of the documentation site runs here, and
the site builds in strict mode (a broken link, anchor or API reference fails).

A block runs as a reader would run it, alone, in a folder holding the reader's own files; where a block needs
what only the reader has (their model, their data, an EDM2 pickle, a GPU, an hour), the shipped digits model,
a tiny stand-in or a smaller size takes its place, by the exact substitutions of ``SUBSTITUTE`` (each must still
match a block: a stale one fails). Python blocks run in a fresh namespace, given what their ``# given:`` line
names. Bash blocks: ``entropic-fast``, ``python``, ``pytest`` and ``torchrun`` lines run; ``make`` lines are
checked against the Makefile's targets (they set up a machine: CI runs ``make test`` itself), ``pip install``
lines against the extras of ``pyproject.toml``.
"""
import glob
import html as html_lib
import io
import os
import pickle
import re
import shlex
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import torch

import entropic_fast as ef

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = ["README.md"] + sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "**", "*.md"),
                                                                          recursive=True))
BIN = os.path.dirname(sys.executable)

# (what the docs say, what runs here, why)
SUBSTITUTE = [
    ('device="cuda"', 'device="cpu"', "no GPU in CI"),
    ("--device cuda", "--device cpu", "no GPU in CI"),
    ('data.Latents("img512-sd.zip"), samples=1024', 'data.Latents("img512-sd.zip"), ef.sigma_grid(8), samples=8',
     "EDM2-XXL at the paper's protocol: an hour of an H100"),
    ("--grid 0.002 80 128 --samples 1024 --batch-size 256", "--grid 0.002 80 8 --samples 8 --batch-size 64",
     "the same, from the command line"),
    ("samples=500, seeds=2", "samples=64, seeds=1", "a smaller table"),
    ("--shape 3 64 64", "--shape 1 8 8", "the digits model's shape"),
    ("--steps 8 16 32 --samplers ddim heun --samples 10000 --seeds 3", "--steps 4 --samplers ddim --samples 64",
     "a smaller table"),
    ("--nnodes=2 --node_rank=$NODE_RANK --nproc_per_node=8", "--nnodes=1 --node_rank=0 --nproc_per_node=2",
     "one node of two CPU processes"),
    ("$HEAD_NODE:29500", "localhost:29517", "one node"),
    ("examples/torchrun_profile.py --out profile.npz", "examples/torchrun_profile.py --out profile.npz --samples 8 "
     "--grid 8", "a smaller profile"),
    ("--benchmark-compare-fail=median:10%", "--benchmark-compare-fail=median:1000%",
     "two runs on a shared 2-core machine differ by more than 10%"),
    ("pytest benchmarks --benchmark", "pytest benchmarks/test_speed_curves.py -q --benchmark", "one speed suite"),
    ("--out p.npz --samples 1024", "--out p.npz --samples 16", "the paper's protocol: a minute on 2 cores"),
    ("--out digits.npz --samples 256 --spectral", "--out digits.npz --samples 32 --spectral", "a smaller profile"),
    ("demo --out demo_out", "demo --quick --out demo_out", "the default demo takes 2 minutes; --quick runs the same path"),
]


def blocks():
    """``(page, line, language, code)`` of every fenced block of the pages."""
    for page in PAGES:
        text = open(os.path.join(ROOT, page), encoding="utf-8").read()
        for m in re.finditer(r"^( *)```(\w*)\n(.*?)^\1```", text, re.S | re.M):
            code = "\n".join(line[len(m.group(1)):] for line in m.group(3).splitlines())
            yield page, text[:m.start()].count("\n") + 1, m.group(2), code


def substituted(code):
    for said, runs, _ in SUBSTITUTE:
        code = code.replace(said, runs)
    return code


RUNNABLE = [b for b in blocks() if b[2] in ("python", "bash")]


def test_every_block_is_python_or_bash_or_plain_text():
    """A block in another language would run nowhere; plain blocks are diagrams (the design map), not code."""
    odd = [f"{p}:{n} ```{lang}" for p, n, lang, _ in blocks() if lang not in ("python", "bash", "")]
    assert not odd, odd
    plain = [(p, n) for p, n, lang, _ in blocks() if lang == ""]
    assert plain == [(p, n) for p, n in plain if p == os.path.join("docs", "design.md")], plain  # the map only


def test_every_substitution_still_matches_a_block():
    text = "\n".join(code for *_, code in RUNNABLE)
    stale = [said for said, _, _ in SUBSTITUTE if said not in text]
    assert not stale, stale


# ---------------------------------------------------------------------------------------------------------------
# The reader's own files: a model module, data, a profile, FID statistics, an EDM2 checkout with pickles.
# ---------------------------------------------------------------------------------------------------------------

MYMODELS = '''"""The reader's models module: the shipped digits model stands in for theirs."""
from entropic_fast import digits


def factory():
    return digits.denoiser()


def inception():
    from entropic_fast.comparison import default_features
    return default_features((1, 8, 8), "cpu")
'''

EDM2_NET = '''"""A stand-in for NVIDIA's EDM2 network classes: the digits model with EDM's call signature."""
import torch
from entropic_fast import digits


class Net(torch.nn.Module):
    label_dim = 0

    def __init__(self):
        super().__init__()
        self.net = digits.denoiser()

    def forward(self, x, sigma, class_labels=None, **kwargs):
        return self.net(x.reshape(-1, 1, 8, 8), sigma.reshape(-1)).reshape(x.shape)
'''


@pytest.fixture(scope="module")
def reader(tmp_path_factory):
    """A folder as a reader's: ``mymodels.py``, ``x.npy``, ``p.npz`` and ``profile.npz``, ``stats.npz``, and an EDM2
    set-up (``edm2/`` with the network's module, two pickles, a latent dataset zip of 4 x 4 x 4 latents)."""
    from entropic_fast import digits
    root = tmp_path_factory.mktemp("reader")
    (root / "mymodels.py").write_text(MYMODELS)
    x = digits.load("train")[0]
    np.save(root / "x.npy", x.numpy())
    prof = ef.profile(digits.denoiser(), x, ef.sigma_grid(16), samples=16, progress=False)
    prof.save(root / "p.npz")
    prof.save(root / "profile.npz")
    f = digits.features(x)
    np.savez(root / "stats.npz", mu=f.mean(0), sigma=np.cov(f, rowvar=False))
    (root / "edm2").mkdir()
    (root / "edm2" / "edm2_standin.py").write_text(EDM2_NET)
    sys.path.insert(0, str(root / "edm2"))
    try:
        import edm2_standin
        for name in ("edm2-img512-xxl-0939524-0.070.pkl", "edm2-img512-xs-uncond-2147483-0.045.pkl"):
            with open(root / name, "wb") as fh:
                pickle.dump({"ema": edm2_standin.Net()}, fh)
    finally:
        sys.path.remove(str(root / "edm2"))
        sys.modules.pop("edm2_standin", None)
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(root / "img512-sd.zip", "w") as z:
        for i in range(8):
            buf = io.BytesIO()
            np.save(buf, np.concatenate([rng.normal(size=(4, 4, 4)), np.full((4, 4, 4), 0.1)]).astype(np.float32))
            z.writestr(f"{i:05d}/img{i:08d}.npy", buf.getvalue())
    return root


def given(name):
    """What a block's ``# given:`` line names, as the test supplies it."""
    from entropic_fast.adapters import diffusers as dfa
    import diffusers
    if name == "pipe":
        from test_adapters import tiny_unet  # a random 1x8x8 UNet2DModel
        return diffusers.DDPMPipeline(tiny_unet(), diffusers.DDPMScheduler(num_train_timesteps=1000))
    if name == "sigmas":
        sched = diffusers.DDPMScheduler(num_train_timesteps=1000)
        den = dfa.denoiser(torch.nn.Identity(), sched)
        grid = ef.sigma_grid(32, den.sigma_min, den.sigma_max)
        return ef.schedule(ef.Profile.from_curve(grid, 64 * grid**2 * 0.25 / (grid**2 + 0.25), 64), 4)
    if name == "shape":
        return (2, 1, 8, 8)
    raise KeyError(f"nothing given for {name!r}: add it to tests/test_docs.py given()")


def givens(code):
    names = []
    for line in re.findall(r"^# given: (.*)$", code, re.M):
        names += re.findall(r"(?:^|, )(\w+)", re.sub(r"\([^)]*\)", "", line))
    return {n: given(n) for n in names}


# ---------------------------------------------------------------------------------------------------------------
# Running the blocks
# ---------------------------------------------------------------------------------------------------------------

def ids(items):
    return [f"{p}:{n}" for p, n, *_ in items]


PYTHON = [b for b in RUNNABLE if b[2] == "python"]
BASH = [b for b in RUNNABLE if b[2] == "bash"]


@pytest.mark.parametrize("page, line, lang, code", PYTHON, ids=ids(PYTHON))
def test_python_block_runs(page, line, lang, code, reader, monkeypatch):
    monkeypatch.chdir(reader)
    monkeypatch.syspath_prepend(str(reader))
    namespace = {"__name__": "__docs__", **givens(code)}
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a block's warnings (unpickling, a short budget) are the reader's to read
        exec(compile(substituted(code), f"{page}:{line}", "exec"), namespace)


def commands(code):
    """The block's commands, continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", code)
    return [c for c in (re.sub(r"(^|\s)#.*$", "", line).strip() for line in joined.splitlines()) if c]


def make_targets():
    text = open(os.path.join(ROOT, "Makefile")).read()
    return set(re.search(r"^\.PHONY:(.*)$", text, re.M).group(1).split())


def extras():
    """The optional-dependency groups of pyproject.toml."""
    text = open(os.path.join(ROOT, "pyproject.toml")).read()
    section = text.split("[project.optional-dependencies]", 1)[1].split("\n[", 1)[0]
    return set(re.findall(r"^(\w+) *=", section, re.M))


def check_or_run(command, cwd):
    """Run one command of a bash block (or check it, for a set-up command); returns an error message or None."""
    words = shlex.split(command)
    if words[0] == "make":
        missing = [t for t in words[1:] if "=" not in t and t not in make_targets()]
        return f"make targets {missing} are not in the Makefile" if missing else None
    if words[:2] in (["pip", "install"], ["python", "-m"]) and "install" in words:
        named = re.findall(r"\[([\w,]+)\]", command)
        unknown = [e for group in named for e in group.split(",") if e not in extras()]
        return f"extras {unknown} are not in pyproject.toml" if unknown else None
    if words[0] not in ("entropic-fast", "python", "pytest", "torchrun"):
        return f"a command this test does not know how to run: {command!r} (teach tests/test_docs.py)"
    words[0] = os.path.join(BIN, words[0]) if words[0] != "python" else sys.executable
    # run in the reader's folder; the repository's own files (examples/..., benchmarks/...) by their full path
    words[1:] = [os.path.join(ROOT, w) if "/" in w and os.path.exists(os.path.join(ROOT, w)) else w for w in words[1:]]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, str(cwd)])}
    run = subprocess.run(words, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    return None if run.returncode == 0 else f"{command!r} exited {run.returncode}:\n{run.stderr[-3000:]}"


@pytest.mark.parametrize("page, line, lang, code", BASH, ids=ids(BASH))
def test_bash_block_runs(page, line, lang, code, reader):
    syntax = subprocess.run(["bash", "-n"], input=code, capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr
    for command in commands(substituted(code)):
        error = check_or_run(command, reader)
        assert error is None, f"{page}:{line}: {error}"


def test_the_site_builds_strict(tmp_path):
    """``make docs`` in strict mode: a broken link, anchor or API reference (mkdocstrings) fails the build."""
    run = subprocess.run([os.path.join(BIN, "mkdocs"), "build", "--strict", "--site-dir", str(tmp_path / "site")],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    assert (tmp_path / "site" / "index.html").exists() and (tmp_path / "site" / "api.html").exists()
    api = (tmp_path / "site" / "api.html").read_text()
    assert "tolerance" in api and "schedule_band" in api  # the docstrings rendered, not just the headings
    assert '"entropic_fast.profiling.profile"' in api and ">ef.profile" in api  # by the name users call
    for page, html in _site_pages(tmp_path / "site"):
        _every_fence_is_a_code_block(page, html)
    index = (tmp_path / "site" / "index.html").read_text()
    links = re.findall(r'href="([^"#:]+)"', index)  # opened from disk: every page link names its .html file
    assert links and all(not link.endswith("/") for link in links), [x for x in links if x.endswith("/")]


def _site_pages(site):
    """``(markdown page, its built HTML)`` for the README (the home page) and every page under docs/."""
    pages = {"README.md": "index.html"}
    for path in glob.glob(os.path.join(ROOT, "docs", "**", "*.md"), recursive=True):
        rel = os.path.relpath(path, os.path.join(ROOT, "docs"))
        pages[os.path.relpath(path, ROOT)] = rel[:-3] + ".html"
    return [(page, (site / html).read_text(encoding="utf-8")) for page, html in sorted(pages.items())]


def _every_fence_is_a_code_block(page, html):
    """Each fenced block of ``page`` (list items' included) is rendered as a <pre> block holding its first line,
    not as inline code or paragraphs."""
    text = open(os.path.join(ROOT, page), encoding="utf-8").read()
    blocks = re.findall(r"^([ \t]*)(```|~~~)[^\n]*\n(.*?)^\1\2", text, re.M | re.S)
    pres = [html_lib.unescape(re.sub(r"<[^>]+>", "", p)) for p in re.findall(r"<pre.*?</pre>", html, re.S)]
    for indent, _, body in blocks:
        first = next((ln.strip() for ln in body.splitlines() if ln.strip()), None)
        assert first is None or any(first in p for p in pres), f"{page}: the fenced block {first!r} is not a code block"


def test_the_render_check_catches_a_fence_that_became_inline(tmp_path):
    """The check itself can fail: the HTML of a fence that a list item swallowed (the old theme's failure)."""
    broken = "<ul><li>ComfyUI: <code>python -m pip install -r requirements.txt</code></li></ul>"
    page = tmp_path / "p.md"
    page.write_text("- ComfyUI:\n\n  ```bash\n  python -m pip install -r requirements.txt\n  ```\n")
    with pytest.raises(AssertionError, match="is not a code block"):
        _every_fence_is_a_code_block(str(page), broken)


def test_the_strict_build_fails_on_a_broken_link(tmp_path):
    """The check that the build is strict can fail: a page with a dead link does not build."""
    import shutil
    shutil.copytree(os.path.join(ROOT, "docs"), tmp_path / "docs")
    shutil.copytree(os.path.join(ROOT, "scripts"), tmp_path / "scripts")
    shutil.copytree(os.path.join(ROOT, "benchmarks", "results"), tmp_path / "benchmarks" / "results")
    for name in ("mkdocs.yml", "README.md", "LICENSE"):
        shutil.copy(os.path.join(ROOT, name), tmp_path / name)
    shutil.copytree(os.path.join(ROOT, "entropic_fast"), tmp_path / "entropic_fast",
                    ignore=shutil.ignore_patterns("*.so", "__pycache__", "weights"))
    with open(tmp_path / "docs" / "cli.md", "a") as f:
        f.write("\nSee [the missing page](no_such_page.md).\n")
    run = subprocess.run([os.path.join(BIN, "mkdocs"), "build", "--strict", "--site-dir", str(tmp_path / "site")],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert run.returncode != 0 and "no_such_page.md" in run.stderr, run.stderr[-2000:]


# ---------------------------------------------------------------------------------------------------------------
# The numbers the README quotes are the committed results'
# ---------------------------------------------------------------------------------------------------------------

def readme_table(first_header):
    """``(header, rows)`` of the README's markdown table whose header starts with ``first_header``."""
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    lines = [line for line in text.splitlines() if line.startswith("|")]
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} "))
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines[start:]]
    rows = []
    for row in cells[2:]:
        if len(row) != len(cells[0]):
            break
        rows.append(row)
    return cells[0], rows


def test_the_readme_frechet_table_is_the_committed_comparison():
    """Each row of the README's table: our kind's cell and the best other kind's, as compare_<model>.json holds them
    (mean ± std over seeds), the other really the best of the kinds that are not ours, and the verdict."""
    import json
    from entropic_fast import kinds
    header, rows = readme_table("model")
    assert header[:3] == ["model", "sampler", "evaluations"] and len(rows) >= 6
    for row in rows:
        result = json.load(open(os.path.join(ROOT, "benchmarks", "results", f"compare_{row[0]}.json")))
        cells = {(c["sampler"], c["evaluations"], c["kind"]): np.asarray(c["frechet"]) for c in result["cells"]}
        here = {k: v for (sm, ev, k), v in cells.items() if (sm, ev) == (row[1], int(row[2]))}
        ours_kind, ours_cell = row[3].split(" ", 1)
        other_kind, other_cell = row[4].split(" ", 1)
        for kind, cell in ((ours_kind, ours_cell), (other_kind, other_cell)):
            mean, std = (float(v) for v in cell.strip("*").split(" ± "))
            f = here[kind]
            assert abs(mean - f.mean()) < 0.051 and abs(std - f.std()) < 0.051, (row[:3], kind, cell, f)
        assert ours_kind in kinds.OUR_KINDS and other_kind not in kinds.OUR_KINDS
        assert other_kind == min((k for k in here if k not in kinds.OUR_KINDS), key=lambda k: here[k].mean()), row
        assert row[5] in ("win", "tie", "loss")


def test_the_readme_costs_are_the_committed_time_to_accuracy():
    """The default's cost quoted in the README: the digits model, control "auto" (the default), the 32-point grid,
    from benchmarks/results/time_to_accuracy.json."""
    import json
    rows = json.load(open(os.path.join(ROOT, "benchmarks", "results", "time_to_accuracy.json")))
    readme = " ".join(open(os.path.join(ROOT, "README.md")).read().split())
    for tol in (0.03, 0.01):
        r = next(r for r in rows if r["model"] == "digits model" and r["control"] == "auto" and r["grid"] == 32
                 and r["tolerance"] == tol)
        quoted = f"{np.mean(r['evaluations']):,.0f}"
        assert quoted in readme, (tol, quoted)
        err = np.asarray(r["error"]) * 100
        assert f"{np.median(err):.1f}" in readme or f"{np.median(err):.2f}" in readme, (tol, err)
        assert f"{np.max(err):.1f}" in readme or f"{np.max(err):.2f}" in readme, (tol, err)
    fast = next(r for r in rows if r["model"] == "digits model" and r["control"] == "auto" and r["grid"] == 32
                and r["tolerance"] == 0.01)
    assert f"takes {np.median(fast['seconds']):.1f} seconds" in readme
