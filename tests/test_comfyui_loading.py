"""The node pack loaded the way ComfyUI loads custom nodes, and its entry in KSampler's scheduler list.

Imitates ComfyUI's ``nodes.load_custom_node`` (Comfy-Org/ComfyUI at a125cd8, 2025-10-12): a folder in
``custom_nodes/`` becomes the module ``spec_from_file_location(path.replace(".", "_x_"), folder/__init__.py)``,
registered in ``sys.modules`` under that name and executed; its ``NODE_CLASS_MAPPINGS`` and
``NODE_DISPLAY_NAME_MAPPINGS`` are read. The module is top-level, so a relative import above the folder fails
there ("attempted relative import beyond top-level package"), which the older ``from ..adapters`` did. And
``comfy.samplers`` as that version has it: ``SCHEDULER_HANDLERS`` maps names to ``SchedulerHandler(handler,
use_ms)``, ``SCHEDULER_NAMES`` is its list of keys, ``KSampler.SCHEDULERS`` is that same list object, and
``calculate_sigmas(model_sampling, name, steps)`` calls ``handler(model_sampling, steps)`` when ``use_ms``.
"""
import importlib.util
import inspect
import os
import shutil
import subprocess
import sys
import sysconfig
import types
from typing import Callable, NamedTuple

import numpy as np
import pytest
import torch

import entropic_fast as ef
from entropic_fast.errors import InputError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_custom_node(module_path):
    """ComfyUI's loader, as described in the module docstring."""
    name = module_path.replace(".", "_x_")
    spec = importlib.util.spec_from_file_location(name, os.path.join(module_path, "__init__.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        sys.modules.pop(name, None)
    return module


def test_the_linked_node_folder_loads(tmp_path):
    """The README's install: entropic_fast/comfyui linked into custom_nodes/ (any folder name)."""
    nodes = tmp_path / "custom_nodes"
    nodes.mkdir()
    os.symlink(os.path.join(ROOT, "entropic_fast", "comfyui"), nodes / "entropic_fast")
    module = load_custom_node(str(nodes / "entropic_fast"))
    assert set(module.NODE_CLASS_MAPPINGS) == {"EntropicScheduler", "EntropicProfile"}
    assert set(module.NODE_DISPLAY_NAME_MAPPINGS) == set(module.NODE_CLASS_MAPPINGS)


def test_the_cloned_repository_loads_with_registry_metadata(tmp_path):
    """ComfyUI Manager's install: the repository cloned into custom_nodes/ (its top-level __init__.py, a
    requirements.txt that installs the package, the registry's [tool.comfy] table)."""
    clone = tmp_path / "custom_nodes" / "entropic.fast"  # a dot in the name, as ComfyUI's _x_ rule handles
    clone.mkdir(parents=True)
    for f in ("__init__.py", "requirements.txt", "pyproject.toml"):
        shutil.copy(os.path.join(ROOT, f), clone / f)
    module = load_custom_node(str(clone))
    assert module.NODE_CLASS_MAPPINGS["EntropicScheduler"].FUNCTION == "get_sigmas"
    import tomllib
    comfy = tomllib.loads((clone / "pyproject.toml").read_text())["tool"]["comfy"]
    assert comfy["PublisherId"] and comfy["DisplayName"]


@pytest.mark.parametrize("cwd", ["root", "custom_nodes", "clone"])
def test_the_requirements_resolve_from_any_folder(tmp_path, cwd):
    """``pip install -r custom_nodes/<pack>/requirements.txt`` from ComfyUI's root, from custom_nodes/ or in the
    pack: no path in the file, so nothing is built or resolved against the folder pip runs in."""
    clone = tmp_path / "custom_nodes" / "entropic_fast"
    clone.mkdir(parents=True)
    shutil.copy(os.path.join(ROOT, "requirements.txt"), clone / "requirements.txt")
    where = {"root": tmp_path, "custom_nodes": tmp_path / "custom_nodes", "clone": clone}[cwd]
    (tmp_path / "setup.py").write_text("raise SystemExit('pip tried to build the folder it runs in')\n")
    reqs = os.path.relpath(clone / "requirements.txt", where)
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "-r", reqs],
                       cwd=str(where), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "Would install" not in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]
    names = [ln.split(">")[0] for ln in (clone / "requirements.txt").read_text().splitlines() if ln[:1].isalpha()]
    assert names == ["numpy", "tqdm"]  # torch is ComfyUI's own: never asked for


def test_a_clone_that_was_never_installed_loads_in_pure_python(tmp_path):
    """No ``pip install .`` (no compiler): the pack's entry point finds the package in the clone, without the C++
    extensions, and says once per extension what that costs."""
    clone = tmp_path / "custom_nodes" / "entropic_fast"
    shutil.copytree(os.path.join(ROOT, "entropic_fast"), clone / "entropic_fast",
                    ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    shutil.copy(os.path.join(ROOT, "__init__.py"), clone / "__init__.py")
    site = sysconfig.get_paths()["purelib"]  # numpy and torch; -S: not the editable install of this checkout
    code = (f"import sys, importlib.util, os; sys.path.append({site!r})\n{inspect.getsource(load_custom_node)}\n"
            f"m = load_custom_node({str(clone)!r})\nimport entropic_fast as ef\n"
            f"assert ef.__file__.startswith({str(clone)!r}), ef.__file__\n"
            "g = ef.analytic.Gaussian(1.0, (4,))\n"
            "p = ef.profile(g, g, ef.sigma_grid(16), samples=16, progress=False)\n"
            "print(sorted(m.NODE_CLASS_MAPPINGS), len(ef.schedule(p, 6)))\n")
    r = subprocess.run([sys.executable, "-S", "-W", "always::RuntimeWarning", "-c", code], cwd=str(tmp_path),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.split("]")[-1].strip() == "7" and "EntropicScheduler" in r.stdout
    assert r.stderr.count("pure-Python twin") == 4, r.stderr[-3000:]


def test_the_cloned_repository_says_what_to_install(tmp_path, monkeypatch):
    clone = tmp_path / "custom_nodes" / "entropic_fast"
    clone.mkdir(parents=True)
    shutil.copy(os.path.join(ROOT, "__init__.py"), clone / "__init__.py")
    monkeypatch.setitem(sys.modules, "entropic_fast.comfyui", None)  # as if the package were not installed
    with pytest.raises(ImportError, match="pip install -r .*custom_nodes/entropic_fast/requirements.txt"):
        load_custom_node(str(clone))


# ---- KSampler's scheduler list

class SchedulerHandler(NamedTuple):
    handler: Callable[..., torch.Tensor]
    use_ms: bool = True


def fake_comfy_samplers():
    names = ["simple", "karras", "normal"]
    samplers = types.ModuleType("comfy.samplers")
    samplers.SchedulerHandler = SchedulerHandler
    samplers.SCHEDULER_HANDLERS = {n: SchedulerHandler(lambda ms, steps: torch.linspace(1, 0, steps + 1)) for n in names}
    samplers.SCHEDULER_NAMES = names
    samplers.KSampler = type("KSampler", (), {"SCHEDULERS": names})
    samplers.normal_scheduler = lambda ms, steps: torch.full((steps + 1,), -1.0)

    def calculate_sigmas(model_sampling, name, steps):
        h = samplers.SCHEDULER_HANDLERS[name]
        if h.use_ms:
            return h.handler(model_sampling, steps)
        return h.handler(n=steps, sigma_min=float(model_sampling.sigma_min), sigma_max=float(model_sampling.sigma_max))
    samplers.calculate_sigmas = calculate_sigmas
    return samplers


class EPS:
    pass


class CONST:
    pass


class ModelSamplingDiscrete:
    sigma_min, sigma_max = torch.tensor(0.0292), torch.tensor(14.6146)


class ModelSamplingDiscreteFlow:
    sigma_min, sigma_max = torch.tensor(0.001), torch.tensor(1.0)


def sampling_of(base, mixin):
    """ComfyUI's model_base.model_sampling: ``class ModelSampling(s, c)``."""
    return type("ModelSampling", (base, mixin), {})()


class Patcher:
    def __init__(self, sampling):
        self.sampling = sampling

    def get_model_object(self, name):
        return self.sampling


@pytest.fixture
def comfy(tmp_path, monkeypatch):
    import entropic_fast.comfyui.nodes as nodes
    samplers = fake_comfy_samplers()
    folders = types.SimpleNamespace(get_output_directory=lambda: str(tmp_path))
    mods = {"comfy.samplers": samplers, "folder_paths": folders}
    monkeypatch.setattr(nodes, "_comfy", lambda name: mods.get(name))
    return samplers, nodes, tmp_path


def eps_profile(path, sampling):
    from entropic_fast.adapters.comfyui import model_record
    rec = model_record(sampling)
    grid = ef.sigma_grid(32, rec["sigma_min"], rec["sigma_max"])
    prof = ef.Profile.from_curve(grid, 4 * grid**2 * 0.25 / (grid**2 + 0.25), 4, meta={"comfyui": rec})
    prof.save(path)
    return prof


def test_ksampler_lists_entropic_and_uses_the_newest_fitting_profile(comfy):
    samplers, nodes, out = comfy
    assert nodes.register_ksampler_scheduler() and not nodes.register_ksampler_scheduler()  # once
    assert samplers.KSampler.SCHEDULERS[-1] == "entropic" and samplers.SCHEDULER_NAMES.count("entropic") == 1
    eps = sampling_of(ModelSamplingDiscrete, EPS)
    with pytest.warns(UserWarning, match="no profile of a ModelSamplingDiscrete .EPS. model"):
        fallback = samplers.calculate_sigmas(eps, "entropic", 8)
    assert (fallback == -1).all()  # ComfyUI's normal schedule, not an error in the middle of a generation
    prof = eps_profile(out / "eps.npz", eps)
    flow = sampling_of(ModelSamplingDiscreteFlow, CONST)
    eps_profile(out / "flow.npz", flow)  # newer, but of a flow model: not used for the EPS one
    got = samplers.calculate_sigmas(eps, "entropic", 8)
    torch.testing.assert_close(got, torch.tensor(ef.schedule(prof, 8, "rescaled"), dtype=torch.float32))
    t = samplers.calculate_sigmas(flow, "entropic", 8)
    assert float(t[0]) < 1 and float(t[-1]) == 0  # flow times for a flow model


def test_the_scheduler_node_refuses_a_profile_of_another_model_by_name(comfy, tmp_path):
    _, nodes, out = comfy
    eps, flow = sampling_of(ModelSamplingDiscrete, EPS), sampling_of(ModelSamplingDiscreteFlow, CONST)
    eps_profile(out / "flow.npz", flow)
    with pytest.raises(InputError, match=r"ModelSamplingDiscreteFlow \(CONST\) model.*this model is "
                                         r"ModelSamplingDiscrete \(EPS\)"):
        nodes.EntropicScheduler().get_sigmas(Patcher(eps), str(out / "flow.npz"), 10, "rescaled", 1.0)
    grid = ef.sigma_grid(32, 0.001, 199.0)  # a profile from elsewhere (no record): its range gives it away
    ef.Profile.from_curve(grid, grid**2 / (grid**2 + 1), 1).save(out / "other.npz")
    with pytest.raises(InputError, match="covers sigma 0.001 .. 199.*this model sigma 0.0292 .. 14.61"):
        nodes.EntropicScheduler().get_sigmas(Patcher(eps), str(out / "other.npz"), 10, "rescaled", 1.0)
    with pytest.raises(InputError, match="ComfyUI MODEL"):
        nodes.EntropicScheduler().get_sigmas(None, str(out / "other.npz"), 10, "rescaled", 1.0)


def test_the_node_offers_the_kinds_its_profiles_support():
    from entropic_fast.comfyui.nodes import EntropicProfile, EntropicScheduler
    kinds = EntropicScheduler.INPUT_TYPES()["required"]["kind"][0]
    assert "spectral" not in kinds and "rescaled" in kinds
    assert "positive" in EntropicProfile.INPUT_TYPES()["required"]  # SD and SDXL models need a conditioning
    assert np.all(np.isin(kinds, ef.KINDS))


def test_a_one_step_ksampler_run_falls_back(comfy):
    samplers, nodes, out = comfy
    nodes.register_ksampler_scheduler()
    eps = sampling_of(ModelSamplingDiscrete, EPS)
    eps_profile(out / "eps.npz", eps)
    with pytest.warns(UserWarning, match="steps must be an integer >= 2"):
        got = samplers.calculate_sigmas(eps, "entropic", 1)
    assert (got == -1).all()  # ComfyUI's normal schedule: the generation goes on


def _damage(out, eps, how):
    """The KSampler entry's seven crashes of the hostile audit, each made on disk or in the output folder."""
    from entropic_fast.adapters.comfyui import model_record
    rec = model_record(eps)
    if how == "dangling link":
        os.symlink(str(out / "gone.npz"), out / "zz.npz")
    elif how == "no output folder":
        os.rmdir(out)
    elif how in ("record a string", "record without keys", "record sigma a string"):
        bad = {"record a string": "EPS", "record without keys": {"sampling": rec["sampling"]},
               "record sigma a string": {**rec, "sigma_min": "0.03"}}[how]
        grid = ef.sigma_grid(32, rec["sigma_min"], rec["sigma_max"])
        ef.Profile.from_curve(grid, grid**2 / (grid**2 + 1), 4, meta={"comfyui": bad}).save(out / "bad.npz")
    elif how == "compression method":
        eps_profile(out / "method.npz", eps)
        data = bytearray(open(out / "method.npz", "rb").read())
        at = data.find(b"PK\x01\x02")
        data[at + 10:at + 12] = (99).to_bytes(2, "little")
        open(out / "method.npz", "wb").write(bytes(data))
    elif how == "unreadable listing":
        os.rmdir(out)
        open(out, "w").close()  # the output folder is a file


@pytest.mark.parametrize("how", ["dangling link", "no output folder", "record a string", "record without keys",
                                 "record sigma a string", "compression method", "unreadable listing"])
def test_a_damaged_output_folder_falls_back_with_a_warning(comfy, how):
    samplers, nodes, out = comfy
    nodes.register_ksampler_scheduler()
    eps = sampling_of(ModelSamplingDiscrete, EPS)
    _damage(out, eps, how)
    with pytest.warns(UserWarning, match="entropic scheduler: .*Using 'normal'"):
        got = samplers.calculate_sigmas(eps, "entropic", 8)
    assert (got == -1).all()  # ComfyUI's normal schedule: the generation goes on


def test_a_tiny_denoise_is_bounded_and_bad_ones_are_named(tmp_path):
    import time
    from entropic_fast.comfyui.nodes import entropic_sigmas
    grid = ef.sigma_grid(32, 0.0292, 14.6146)
    prof = ef.Profile.from_curve(grid, 4 * grid**2 * 0.25 / (grid**2 + 0.25), 4)
    t = time.perf_counter()
    got = entropic_sigmas(prof, 20, "rescaled", 1e-6)  # ComfyUI would ask 2 * 10^7 steps
    assert time.perf_counter() - t < 5 and got.shape == (21,) and float(got[-1]) == 0
    assert torch.all(got[:-1] > 0) and torch.all(torch.diff(got) < 0)
    for denoise in (float("nan"), "x", None):
        with pytest.raises(InputError, match="denoise"):
            entropic_sigmas(prof, 20, "rescaled", denoise)
