"""Run by A1111 / Forge at start-up: make entropic_fast importable in the webui's Python, unless it is already.

Linked from a clone of the repository: installs the package from it (its C++ extensions built there). A folder
written by ``make webui`` (``scripts/webui_bundle.py``), copied into ``extensions/``: carries the package itself,
so only what it imports beside the webui's torch is installed (numpy, tqdm; the webui has both)."""
import os

import launch

HERE = os.path.dirname(os.path.realpath(__file__))

if not launch.is_installed("entropic_fast"):
    root = os.path.dirname(os.path.dirname(HERE))
    if os.path.exists(os.path.join(root, "setup.py")):
        launch.run_pip(f'install "{root}"', "entropic_fast (its C++ extensions are built here)")
    elif os.path.isdir(os.path.join(HERE, "entropic_fast")):
        for dep in ("numpy", "tqdm"):
            if not launch.is_installed(dep):
                launch.run_pip(f"install {dep}", f"{dep} for entropic_fast")
    else:
        print("entropic_fast: this folder holds neither the package nor a link into its repository: copy the folder "
              "that `make webui` writes (dist/webui/entropic_fast) instead, link integrations/webui from a clone, or "
              "pip install the repository into the webui's Python")
