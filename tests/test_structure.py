"""The structure the map promises (issue 28), measured by scripts/structure.py, and the measure itself tested."""
import ast
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import structure  # noqa: E402


def test_no_long_functions_no_long_run_methods_no_backward_imports():
    lines, ok = structure.report()
    assert ok, "\n".join(lines)


def test_the_measure_sees_a_backward_import_and_an_unplaced_module():
    e, s = structure.LAYER["estimate"], structure.LAYER["schedules"]
    assert structure.backward({("estimate", "schedules")}) == [
        f"estimate (layer {e}) imports schedules (layer {s}), later in the data flow"]
    assert structure.backward({("estimate", "newthing")}) == ["estimate -> newthing: not on the map"]
    assert structure.backward({("schedules", "estimate")}) == []


@pytest.mark.parametrize("code, file, found", [
    ("from .schedules import schedule", "estimate.py", ["schedules"]),
    ("from . import checks, files", "estimate.py", ["checks", "files"]),
    ("from ..errors import InputError", "kernels/cpu.py", ["errors"]),
    ("from . import reference", "kernels/cpu.py", ["kernels"]),
    ("from .. import _ideal", "kernels/cpu.py", ["_ideal"]),
    ("import entropic_fast.cli", "comfyui/nodes.py", ["cli"]),
    ("from entropic_fast.profile import Profile", "comfyui/nodes.py", ["profile"]),
    ("import numpy", "estimate.py", []),
])
def test_imports_are_read_as_python_resolves_them(code, file, found):
    node = ast.parse(code).body[0]
    assert structure._targets(node, structure.PACKAGE / file) == found


def _imports_of(path):
    return [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.ImportFrom)]


def test_production_code_does_not_import_the_tests_oracle_nor_private_names():
    """kernels/reference.py is the oracle (and the torch launchers within kernels/); no module outside kernels/ imports
    it, and no module imports another's private names."""
    for path in structure.PACKAGE.rglob("*.py"):
        inside = path.parent.name == "kernels"
        for node in _imports_of(path):
            names = [a.name for a in node.names]
            assert inside or "reference" not in (node.module or "").split(".") + names, (path, node.module)
            private = [n for n in names if n.startswith("_") and not n.startswith("__") and
                       n not in ("_curves", "_noise", "_stats", "_ideal")]
            assert not private, (path, node.module, private)


def test_the_package_lists_its_public_api_only():
    import entropic_fast as ef
    internals = {"sums", "batches", "units", "signals", "checkpoint", "fingerprint", "files", "checks", "estimate",
                 "kernels", "protocol"}
    assert not internals & set(ef.__all__)
    for name in ef.__all__:
        assert getattr(ef, name) is not None  # every listed name resolves
    assert ef.sums.__name__ == "entropic_fast.sums"  # internals still import by name


def test_the_positional_measure_finds_a_long_call(tmp_path, monkeypatch):
    (tmp_path / "mod.py").write_text("def f(*a):\n    pass\n\n\nf(1, 2, 3, 4, 5, 6, 7)\nf(1, 2, 3, 4, 5, 6, x=7)\n"
                                     "max(1, 2, 3, 4, 5, 6, 7)\n")
    monkeypatch.setattr(structure, "PACKAGE", tmp_path)
    monkeypatch.setattr(structure, "ROOT", tmp_path)
    assert structure.positional_calls() == [("mod.py:5", "f", 7)]  # its own function only, keywords free


def test_the_measure_sees_plain_rows_written_outside_sums(tmp_path):
    """Issue 40: the plain part's rows belong to ``sums``; a kernel adding at ``2 * n_sigmas`` by hand is found."""
    pkg = tmp_path / "entropic_fast"
    (pkg / "kernels").mkdir(parents=True)
    (pkg / "sums.py").write_text("x = acc + 2 * n_sigmas\n")  # the owner may
    (pkg / "kernels" / "k.py").write_text("ok = 1\ntl.atomic_add(acc_ptr + 2 * n_sigmas + i, ok)\n")
    assert structure.row_offsets(pkg) == ["entropic_fast/kernels/k.py:2"]
    assert structure.row_offsets() == []


def test_the_measure_sees_a_second_run_loop(tmp_path):
    """Issue 40: one resumable-run runtime; a module deferring signals or writing a checkpoint itself is found."""
    pkg = tmp_path / "entropic_fast"
    pkg.mkdir()
    (pkg / "runtime.py").write_text("with signals.deferring():\n    ckpt.write(p, s, a, f)\n")  # the owner may
    (pkg / "loop.py").write_text("x = 1\nwith signals.deferring():\n    signals.poll()\ncheckpoint.write(p)\n")
    assert structure.run_loops(pkg) == ["entropic_fast/loop.py:2", "entropic_fast/loop.py:3",
                                        "entropic_fast/loop.py:4"]
    assert structure.run_loops() == []


def test_profile_and_compare_runs_are_clients_of_the_one_runtime():
    from entropic_fast import comparison, estimate, runtime
    assert issubclass(estimate.Run, runtime.Resumable) and issubclass(comparison.Run, runtime.Resumable)
    for cls in (estimate.Run, comparison.Run):  # the loop, commit, save and resume are the runtime's, not overridden
        for name in ("loop", "commit", "save", "checkpoint_or_check", "execute" if cls is comparison.Run else "loop"):
            assert name not in vars(cls), (cls, name)
