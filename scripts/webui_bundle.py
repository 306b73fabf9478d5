"""Write a self-contained A1111 / Forge extension folder: ``integrations/webui`` with a copy of the package
beside it, so that a *copy* of the folder into the webui's ``extensions/`` works with nothing else installed (the
package runs from the folder, in pure Python where its C++ extensions do not load in the webui's Python).

    python scripts/webui_bundle.py dist/webui/entropic_fast      # what `make webui` runs
"""
import argparse
import os
import shutil
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# the digits model's weights are not the webui's; compiled extensions are this machine's (the webui's Python may be
# another): the copy runs the pure-Python twins, which a schedule (milliseconds) does not notice
SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", "weights", "*.so", "*.pyd")


def bundle(dest):
    """Write the extension folder at ``dest`` (replaced whole, atomically: built beside it, then renamed)."""
    dest = os.path.abspath(dest)
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    work = tempfile.mkdtemp(prefix=".webui-", dir=os.path.dirname(dest))
    try:
        shutil.copytree(os.path.join(ROOT, "integrations", "webui"), os.path.join(work, "ext"), ignore=SKIP)
        shutil.copytree(os.path.join(ROOT, "entropic_fast"), os.path.join(work, "ext", "entropic_fast"), ignore=SKIP)
        if os.path.exists(dest):
            shutil.rmtree(dest)
        os.rename(os.path.join(work, "ext"), dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dest


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dest", help="the extension folder to write (copy it into the webui's extensions/)")
    print(f"wrote {bundle(p.parse_args(argv).dest)}: copy it into the webui's extensions/ folder")
    return 0


if __name__ == "__main__":
    sys.exit(main())
