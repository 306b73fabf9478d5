"""ComfyUI's entry point when this repository is cloned into ``ComfyUI/custom_nodes/`` (ComfyUI Manager and the
Comfy registry install packs that way, then ``pip install -r requirements.txt`` here, which installs this
package and builds its C++ extensions). ComfyUI loads this file as a top-level module named after the folder's
path, so the nodes come from the installed package by absolute import. Not part of the Python package."""
try:
    from entropic_fast.comfyui import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # noqa: F401
except ImportError as e:  # ComfyUI shows this under "IMPORT FAILED"
    raise ImportError(f"entropic_fast is not installed in ComfyUI's Python ({e}): run `python -m pip install -r "
                      "requirements.txt` in this folder with ComfyUI's Python") from e
