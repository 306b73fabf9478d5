"""What every quality benchmark shares: its arguments, seeds, mean +- std cells, markdown tables, figures.

A quality benchmark keeps only its own experiment: ``run(quick) -> rows`` and a ``write`` that lays the
rows out with :func:`table` under :func:`header`, saved by :func:`save`. ``--quick`` is the reduced run
that CI executes (tests/test_benchmarks.py); the full run writes to ``benchmarks/results/``.
"""
import argparse
import os
import platform
import time

import numpy as np

from entropic_fast.checks import pyplot  # noqa: F401  (matplotlib on the Agg backend, for the figures)

RESULTS = os.path.join(os.path.dirname(__file__), "results")


def arguments(doc, **extra):
    """``--quick`` and ``--out-dir`` (plus ``extra``: name -> (type, default, help)), parsed."""
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a reduced run (what CI runs)")
    ap.add_argument("--out-dir", default=RESULTS)
    for name, (kind, default, text) in extra.items():
        ap.add_argument(f"--{name.replace('_', '-')}", type=kind, default=default, help=text)
    return ap.parse_args()


def main(doc, run, write):
    """The command line of a quality benchmark: ``write(*run(quick), out_dir, quick)``, printed."""
    args = arguments(doc)
    result = run(args.quick)
    print(write(*(result if isinstance(result, tuple) else (result,)), args.out_dir, args.quick))


def seeds(n, quick, quick_n=1):
    """The seeds of a run: ``range(n)``, or ``range(quick_n)`` for a quick one."""
    return range(quick_n if quick else n)


def machine():
    """One line naming the machine (CPU model, cores) and the software that matters."""
    import torch
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or platform.machine()
    return f"{cpu}, {os.cpu_count()} cores; python {platform.python_version()}, torch {torch.__version__}"


def header(title, script, quick, *notes, seconds=None):
    """Title, the command that made the file, the machine, the date and any notes, as markdown lines."""
    took = "" if seconds is None else f"; {seconds:.0f} s"
    lines = [f"# {title}", "", f"Command: `python benchmarks/{script}{' --quick' if quick else ''}`  ",
             f"Machine: {machine()}{took}  ", f"Date: {time.strftime('%Y-%m-%d')}"]
    return lines + ([""] + list(notes) if notes else []) + [""]


def mean_std(values, digits=4):
    """``mean ± std`` of a list of values over seeds, fixed-point (``mean`` alone for one value, to 4 figures)."""
    v = np.asarray(values, dtype=np.float64)
    return f"{v.mean():.4g}" if v.size == 1 else f"{v.mean():.{digits}f} ± {v.std():.{digits}f}"


def table(keys, columns, rows, best=min, fmt=mean_std):
    """A markdown table: ``rows`` are ``(key cells, {column: values})``; the best column of each row
    (by mean, ``best`` = min or max) in bold, none where every column ties (no win counted); a missing
    column shows as ``-``. Returns (lines, wins)."""
    lines = ["| " + " | ".join(list(keys) + list(columns)) + " |", "| --- " * (len(keys) + len(columns)) + "|"]
    wins = dict.fromkeys(columns, 0)
    for key, vals in rows:
        means = {c: float(np.mean(v)) for c, v in vals.items()}
        top = best(means, key=means.get) if len(set(means.values())) > 1 else None
        if top is not None:
            wins[top] += 1
        cells = [("**%s**" if c == top else "%s") % fmt(vals[c]) if c in vals else "-" for c in columns]
        lines.append("| " + " | ".join([str(k) for k in key] + cells) + " |")
    return lines, wins


def findings(out_dir, name, quick):
    """The hand-written ``## Findings`` section of the results file a re-run replaces ("" if none), to keep."""
    path = os.path.join(out_dir, f"{name}{'_quick' if quick else ''}.md")
    if not os.path.exists(path):
        return ""
    with open(path) as f:
        old = f.read()
    return old[old.index("\n## Findings"):] if "\n## Findings" in old else ""


def save(out_dir, name, quick, text):
    """Write ``name{_quick}.md`` atomically in ``out_dir``; returns its path."""
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{name}{'_quick' if quick else ''}.md")
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)
    return path

