"""MkDocs hooks: the site's home page is the README (its links rewritten for the site), and the committed results
(``benchmarks/results/``) are served as ``results/``, so the pages link the numbers they quote and a strict build
fails when one is missing. Nothing is copied into ``docs/``: one source for each page."""
import os
import re

from mkdocs.structure.files import File

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def home(readme):
    """The README as the site's ``index.md``: ``docs/x.md`` -> ``x.md``, ``benchmarks/results/`` -> ``results/``."""
    return re.sub(r"\]\((?:docs/|(benchmarks/)(?=results/))", lambda m: "](", readme)


def on_files(files, config):
    """Add the home page, the licence and every file of ``benchmarks/results/`` (at ``results/<name>``)."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        files.append(File.generated(config, "index.md", content=home(f.read())))
    files.append(File("LICENSE", ROOT, config["site_dir"], config["use_directory_urls"]))
    results = os.path.join(ROOT, "benchmarks")
    for name in sorted(os.listdir(os.path.join(results, "results"))):
        if name.endswith((".md", ".png", ".json")):
            files.append(File(f"results/{name}", results, config["site_dir"], config["use_directory_urls"]))
    return files
