"""The A1111 / Forge extension in ``integrations/webui`` driven through the webui's own conventions.

Imitates lllyasviel/stable-diffusion-webui-forge at 0863765: ``modules/sd_schedulers.py`` (a ``Scheduler``
dataclass of name, label, function, default_rho -1, need_inner_model False, aliases None; the list ``schedulers``
the "Schedule type" dropdown shows by label; ``schedulers_map`` by name and label), and
``KDiffusionSampler.get_sigmas`` in ``modules/sd_samplers_kdiffusion.py``: one more step when the sampler has
``discard_next_to_last_sigma``, the scheduler looked up in ``schedulers_map`` by the dropdown's label (``None``
or a function of None: the model's own sigmas), called as ``function(n=steps, sigma_min=..., sigma_max=...,
device=...)`` with the model wrapper's float32 limits (or the user's settings), then the next-to-last sigma
dropped. Also ``shared.opts`` / ``OptionInfo`` / ``script_callbacks.on_ui_settings`` and ``launch`` for install.py.
"""
import dataclasses
import importlib.util
import os
import sys
import types

import numpy as np
import pytest
import torch

import entropic_fast as ef
from entropic_fast.adapters.flow import t_to_sigma

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXT = os.path.join(ROOT, "integrations", "webui")


@dataclasses.dataclass
class Scheduler:
    name: str
    label: str
    function: object
    default_rho: float = -1
    need_inner_model: bool = False
    aliases: list = None


def karras_like(n, sigma_min, sigma_max, device="cpu"):
    return torch.linspace(float(sigma_max), float(sigma_min), n).tolist() + [0.0]


@pytest.fixture
def webui(monkeypatch, tmp_path):
    """Fake ``modules`` (sd_schedulers, shared, script_callbacks) and the extension's script loaded into it."""
    sd = types.ModuleType("modules.sd_schedulers")
    sd.Scheduler = Scheduler
    sd.schedulers = [Scheduler("automatic", "Automatic", None), Scheduler("karras", "Karras", karras_like, 7.0)]
    sd.schedulers_map = {**{x.name: x for x in sd.schedulers}, **{x.label: x for x in sd.schedulers}}
    options, callbacks = {}, []
    shared = types.ModuleType("modules.shared")
    shared.opts = types.SimpleNamespace(add_option=lambda key, info: options.__setitem__(key, info))
    shared.OptionInfo = lambda default, label, section=None: types.SimpleNamespace(default=default, label=label,
                                                                                   section=section)
    cb = types.ModuleType("modules.script_callbacks")
    cb.on_ui_settings = callbacks.append
    modules = types.ModuleType("modules")
    modules.sd_schedulers, modules.shared, modules.script_callbacks = sd, shared, cb
    for name, mod in (("modules", modules), ("modules.sd_schedulers", sd), ("modules.shared", shared),
                      ("modules.script_callbacks", cb)):
        monkeypatch.setitem(sys.modules, name, mod)
    path = os.path.join(EXT, "scripts", "entropic_fast_scheduler.py")
    spec = importlib.util.spec_from_file_location("entropic_fast_scheduler_ext", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return types.SimpleNamespace(sd=sd, shared=shared, options=options, callbacks=callbacks, script=script,
                                 tmp=tmp_path)


def get_sigmas(sd, label, steps, m_sigma_min, m_sigma_max, discard=False):
    """Forge's KDiffusionSampler.get_sigmas, as described in the module docstring."""
    steps += 1 if discard else 0
    scheduler = sd.schedulers_map.get(label)
    if scheduler is None or scheduler.function is None:
        raise AssertionError(f"{label!r} fell back to the model's own schedule")
    kwargs = {"sigma_min": m_sigma_min, "sigma_max": m_sigma_max}
    if scheduler.need_inner_model:
        kwargs["inner_model"] = object()
    sigmas = torch.as_tensor(scheduler.function(n=steps, **kwargs, device=torch.device("cpu")))
    if discard:
        sigmas = torch.cat([sigmas[:-2], sigmas[-1:]])
    return sigmas.cpu()


def save_profile(w, lo, hi, name="p.npz"):
    grid = ef.sigma_grid(64, lo, hi)
    prof = ef.Profile.from_curve(grid, 4 * grid**2 * 0.25 / (grid**2 + 0.25), 4)
    path = str(w.tmp / name)
    prof.save(path)
    w.shared.opts.entropic_fast_profile = path
    return prof


def test_registration_reaches_the_dropdown_by_label_and_name(webui):
    entry = webui.sd.schedulers[-1]
    assert entry.label == "Entropic" and webui.sd.schedulers_map["Entropic"] is entry
    assert webui.sd.schedulers_map["entropic"] is entry and not entry.need_inner_model
    webui.script.register()  # idempotent
    assert len(webui.sd.schedulers) == 3
    assert len(webui.callbacks) == 1
    webui.callbacks[0]()
    assert set(webui.options) == {"entropic_fast_profile", "entropic_fast_kind"}
    assert webui.options["entropic_fast_kind"].default == "rescaled"


def test_the_kind_comes_from_the_settings(webui):
    prof = save_profile(webui, 0.0291675, 14.614643)
    webui.shared.opts.entropic_fast_kind = "las"
    got = get_sigmas(webui.sd, "Entropic", 8, 0.0291675, 14.614643)
    torch.testing.assert_close(got, torch.tensor(ef.schedule(prof, 8, "las"), dtype=torch.float32))
    webui.shared.opts.entropic_fast_kind = "spectral"  # a kind this profile cannot give
    with pytest.warns(UserWarning, match="unknown kind 'spectral'"):
        got = get_sigmas(webui.sd, "Entropic", 8, 0.0291675, 14.614643)
    torch.testing.assert_close(got, torch.tensor(ef.schedule(prof, 8, "rescaled"), dtype=torch.float32))


def test_webuis_float32_limits_and_the_discarding_samplers(webui):
    """The README's old recipe failed here: a profile on the diffusers adapter's range, called with webui's
    float32-derived limits 1.2e-5 apart."""
    prof = save_profile(webui, 0.0291675, 14.614643)
    lo32, hi32 = 0.029167158529162407, float(np.float32(14.614643))
    got = get_sigmas(webui.sd, "Entropic", 10, torch.tensor(lo32), torch.tensor(hi32))
    want = torch.tensor(ef.schedule(prof, 10, "rescaled"), dtype=torch.float32)
    torch.testing.assert_close(got, want)
    dpm2 = get_sigmas(webui.sd, "Entropic", 10, lo32, hi32, discard=True)
    assert dpm2.shape == (11,) and float(dpm2[-1]) == 0 and torch.all(dpm2[:-1] > dpm2[1:])
    torch.testing.assert_close(dpm2[:-2], torch.tensor(ef.schedule(prof, 11, "rescaled")[:-3], dtype=torch.float32))


def test_a_range_beyond_the_profile_is_clipped_with_a_warning(webui):
    prof = save_profile(webui, 0.0291675, 14.614643)
    with pytest.warns(UserWarning, match=r"sigma 0.01 .. 14.6146 requested, the profile covers 0.0291675 .. 14.6146"):
        got = get_sigmas(webui.sd, "Entropic", 8, 0.01, 14.614643)
    assert got.shape == (9,) and float(got[-2]) >= 0.0291675 * (1 - 1e-6)  # clipped: the bounds are the profile's
    want = ef.schedule(prof, 8, "rescaled", interval="range")
    assert float(ef.schedule(prof, 8, "rescaled", interval="range")[-2]) == pytest.approx(0.0291675, rel=1e-6)
    torch.testing.assert_close(got, torch.tensor(ef.schedule(prof, 8, "rescaled"), dtype=torch.float32))
    assert want[0] > float(got[0])  # the rule starts below the model's top


def test_flux_in_forge_gets_flow_times(webui):
    """Forge passes Flux's flow times (0.000316, 1.0): the schedule comes back in flow time."""
    prof = save_profile(webui, t_to_sigma(0.000316), 199.0)
    t = get_sigmas(webui.sd, "Entropic", 12, 0.000316, 1.0)
    s = ef.schedule(prof, 12, "rescaled")
    torch.testing.assert_close(t, torch.tensor(s / (1 + s), dtype=torch.float32))
    assert float(t[0]) < 1 and float(t[-1]) == 0 and torch.all(t[:-1] > t[1:])


def test_no_profile_still_generates(webui):
    webui.shared.opts.entropic_fast_profile = str(webui.tmp / "missing.npz")
    with pytest.warns(UserWarning, match="no usable profile"):
        got = get_sigmas(webui.sd, "Entropic", 6, 0.0292, 14.6)
    torch.testing.assert_close(got, torch.tensor(ef.grids.karras(6, 0.0292, 14.6), dtype=torch.float32))


def test_install_py_installs_from_the_repository(monkeypatch):
    calls = []
    launch = types.ModuleType("launch")
    launch.is_installed = lambda name: False
    launch.run_pip = lambda command, desc=None: calls.append(command)
    monkeypatch.setitem(sys.modules, "launch", launch)
    spec = importlib.util.spec_from_file_location("entropic_fast_install", os.path.join(EXT, "install.py"))
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    assert calls == [f'install "{ROOT}"']


def test_the_clis_a1111_snippet_registers_name_and_label(webui, capsys):
    from entropic_fast.cli import main
    save_profile(webui, 0.0291675, 14.614643)
    assert main(["schedule", webui.shared.opts.entropic_fast_profile, "--steps", "8", "--format", "a1111"]) == 0
    exec(capsys.readouterr().out, {})
    entry = webui.sd.schedulers[-1]
    assert webui.sd.schedulers_map["Entropic (rescaled)"] is entry is webui.sd.schedulers_map["entropic_rescaled"]
    assert get_sigmas(webui.sd, "Entropic (rescaled)", 8, 0.029167158529162407, 14.614643).shape == (9,)


def test_a_schedule_the_profile_cannot_give_does_not_stop_the_generation(webui):
    save_profile(webui, 0.0291675, 14.614643)
    with pytest.warns(UserWarning, match="using Karras' schedule for this generation"):
        got = get_sigmas(webui.sd, "Entropic", 1, 0.0291675, 14.614643)  # one step: no schedule of ours
    assert got.shape == (2,) and float(got[-1]) == 0


def test_a_replaced_profile_with_the_old_mtime_is_read_again(webui):
    """``cp -p`` / ``rsync -a`` keep the mtime: the cache is keyed on the content."""
    save_profile(webui, 0.0291675, 14.614643)
    path = webui.shared.opts.entropic_fast_profile
    before = get_sigmas(webui.sd, "Entropic", 8, 0.0291675, 14.614643)
    stat = os.stat(path)
    grid = ef.sigma_grid(64, 0.0291675, 14.614643)
    ef.Profile.from_curve(grid, 4 * grid**2 * 4.0 / (grid**2 + 4.0), 4).save(path)  # other data, c = 2
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    after = get_sigmas(webui.sd, "Entropic", 8, 0.0291675, 14.614643)
    assert not torch.equal(before, after)


@pytest.mark.parametrize("damage", ["dangling link", "folder", "method"])
def test_a_damaged_profile_falls_back_with_a_warning(webui, damage):
    save_profile(webui, 0.0291675, 14.614643)
    path = webui.shared.opts.entropic_fast_profile
    if damage == "dangling link":
        os.remove(path)
        os.symlink(str(webui.tmp / "gone.npz"), path)
    elif damage == "folder":
        os.remove(path)
        os.mkdir(path)
    else:
        data = bytearray(open(path, "rb").read())
        at = data.find(b"PK\x01\x02")
        data[at + 10:at + 12] = (99).to_bytes(2, "little")  # a compression method zipfile lacks
        open(path, "wb").write(bytes(data))
    with pytest.warns(UserWarning, match="no usable profile"):
        got = get_sigmas(webui.sd, "Entropic", 6, 0.0292, 14.6)
    torch.testing.assert_close(got, torch.tensor(ef.grids.karras(6, 0.0292, 14.6), dtype=torch.float32))


BUNDLED = """
import dataclasses, json, runpy, sys, types
sys.path.append(SITE)  # numpy and torch; -S: not the editable install of this checkout


pips, options, callbacks = [], {}, []
launch = types.ModuleType("launch")
launch.is_installed = lambda name: name != "entropic_fast"
launch.run_pip = lambda command, desc=None: pips.append(command)
sd = types.ModuleType("modules.sd_schedulers")
sd.Scheduler, sd.schedulers, sd.schedulers_map = Scheduler, [], {}
shared = types.ModuleType("modules.shared")
shared.opts = types.SimpleNamespace(add_option=lambda key, info: options.__setitem__(key, info))
shared.OptionInfo = lambda default, label, section=None: default
cb = types.ModuleType("modules.script_callbacks")
cb.on_ui_settings = callbacks.append  # --nowebui: never called
modules = types.ModuleType("modules")
modules.sd_schedulers, modules.shared, modules.script_callbacks = sd, shared, cb
sys.modules.update({"launch": launch, "modules": modules, "modules.sd_schedulers": sd, "modules.shared": shared,
                    "modules.script_callbacks": cb})
runpy.run_path(EXT + "/install.py")
runpy.run_path(EXT + "/scripts/entropic_fast_scheduler.py")
import entropic_fast
shared.opts.entropic_fast_profile = PROFILE
s = sd.schedulers_map["Entropic"].function(n=8, sigma_min=0.0291675, sigma_max=14.614643, device="cpu")
print(json.dumps({"pips": pips, "options": sorted(options), "where": entropic_fast.__file__,
                  "sigmas": [float(v) for v in s]}))
"""


def test_a_copied_make_webui_folder_works_with_nothing_installed(tmp_path):
    """Forge's "copy the folder" install: the folder ``make webui`` writes, copied into extensions/, with no
    entropic_fast in the webui's Python: install.py asks for nothing of ours, the script loads the package from the
    folder (pure Python: the extensions there are not built), registers its settings without the UI (--nowebui)
    and gives the installed package's schedule."""
    import json
    import subprocess
    import sysconfig
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    try:
        import webui_bundle
    finally:
        sys.path.pop(0)
    made = webui_bundle.bundle(tmp_path / "dist" / "entropic_fast")
    ext = tmp_path / "webui" / "extensions" / "entropic_fast"
    ext.parent.mkdir(parents=True)
    subprocess.run(["cp", "-r", made, str(ext)], check=True)  # the docs' copy, not a link
    grid = ef.sigma_grid(64, 0.0291675, 14.614643)
    prof = ef.Profile.from_curve(grid, 4 * grid**2 * 0.25 / (grid**2 + 0.25), 4)
    path = prof.save(str(tmp_path / "p.npz"))
    import inspect
    scheduler = inspect.getsource(Scheduler)  # Forge's dataclass, as above (BUNDLED imports dataclasses)
    code = (f"SITE, EXT, PROFILE = {sysconfig.get_paths()['purelib']!r}, {str(ext)!r}, {str(path)!r}\n"
            + BUNDLED.replace("pips, options, callbacks", scheduler + "\n\npips, options, callbacks", 1))
    r = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=300,
                       cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["pips"] == [] and got["where"].startswith(str(ext)) and "pure-Python twin" in r.stderr
    assert got["options"] == ["entropic_fast_kind", "entropic_fast_profile"]
    from entropic_fast.adapters.kdiffusion import scheduler
    want = scheduler(prof, "rescaled")(8, 0.0291675, 14.614643, "cpu")
    np.testing.assert_allclose(got["sigmas"], np.asarray(want, np.float64), rtol=1e-12)


def test_a_copy_of_the_bare_integration_folder_says_what_to_do(monkeypatch, tmp_path, capsys):
    ext = tmp_path / "extensions" / "entropic_fast"
    ext.mkdir(parents=True)
    (ext / "install.py").write_text(open(os.path.join(EXT, "install.py")).read())
    launch = types.ModuleType("launch")
    launch.is_installed = lambda name: False
    launch.run_pip = lambda command, desc=None: pytest.fail(f"pip {command}")
    monkeypatch.setitem(sys.modules, "launch", launch)
    spec = importlib.util.spec_from_file_location("entropic_fast_install_copy", str(ext / "install.py"))
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    assert "make webui" in capsys.readouterr().out
