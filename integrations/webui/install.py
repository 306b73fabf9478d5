"""Run by A1111 / Forge at start-up: install entropic_fast into the webui's Python from the repository this
extension folder belongs to (where it is linked or cloned from), unless it is installed already."""
import os

import launch

if not launch.is_installed("entropic_fast"):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
    if os.path.exists(os.path.join(root, "setup.py")):
        launch.run_pip(f'install "{root}"', "entropic_fast (its C++ extensions are built here)")
    else:
        print("entropic_fast: install it into the webui's Python (pip install <path to the entropic_fast repository>)")
