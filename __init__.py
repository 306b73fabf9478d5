"""ComfyUI's entry point when this repository is cloned into ``ComfyUI/custom_nodes/`` (ComfyUI Manager and the
Comfy registry install packs that way, then ``pip install -r requirements.txt``, which installs what the package
imports beside ComfyUI's torch). ComfyUI loads this file as a top-level module named after the folder's path, so
the nodes come by absolute import: from an installed entropic_fast (a wheel, or ``pip install .`` with a compiler:
the C++ extensions), else from this clone (appended to ``sys.path``; pure Python where the extensions were not
built, with one warning naming the cost). Not part of the Python package."""
import os
import sys

try:
    from entropic_fast.comfyui import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # noqa: F401
except ImportError:
    _HERE = os.path.dirname(os.path.abspath(__file__))
    if os.path.isdir(os.path.join(_HERE, "entropic_fast")) and _HERE not in sys.path:
        sys.path.append(_HERE)  # appended: nothing of this clone shadows a module found before it
    try:
        from entropic_fast.comfyui import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # noqa: F401
    except ImportError as e:  # ComfyUI shows this under "IMPORT FAILED"
        raise ImportError(f"entropic_fast cannot be loaded in ComfyUI's Python ({e}): run `python -m pip install -r "
                          f"{os.path.join(_HERE, 'requirements.txt')}` with ComfyUI's Python") from e
