"""Print the measures of the code's structure (issue 28): long functions, the run's long methods, backward imports.

    python scripts/structure.py          # exit status 1 when a measure fails

The map (``LAYERS``, in data-flow order; docs/design.md section 2 describes each module) is the law: a module
may import from its own layer and the ones before it, never from a later one.
"""
import ast
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "entropic_fast"
FUNCTION_LIMIT, RUN_METHOD_LIMIT, POSITIONAL_LIMIT = 60, 40, 6

LAYERS = (
    ("errors", "checks", "signals", "files", "options", "costs", "purepy", "curves", "_curves", "_noise", "_stats", "_ideal"),  # foundations
    ("grids", "peers", "fingerprint", "units"),  # sigma grids; peer schedules; fingerprints; work units and seeds
    ("control",),  # control variates: their estimator and their sums' rows
    ("sums",),  # the accumulator layout's one owner
    ("provenance",),  # what a profile's behaviour depends on, typed
    ("merging", "profile_file"),  # how profiles merge; the profile file
    ("profile",),  # Profile: the sums on the host and their provenance
    ("recorder",),  # profiles recorded from a training loop
    ("protocol", "data"),  # the denoiser/data protocol; dataset readers
    ("kernels",),  # Triton kernels, their torch twins, the CPU launchers
    ("analytic",),  # models with exact denoisers
    ("batches", "checkpoint"),  # units into batches; checkpoints
    ("runtime",),  # the resumable run both loops share
    ("estimate",),  # the Monte-Carlo run and its fixed plan
    ("times",),  # time changes and their inverse
    ("samplers",),  # samplers taking a sigma list
    ("gaussian",),  # Gaussian sampler theory
    ("interval",),  # where a schedule starts and stops
    ("kinds",),  # the table of schedule kinds
    ("schedules",),  # schedules and bands
    ("adaptive",),  # the adaptive plan
    ("profiling",),  # ef.profile, the one entry point
    ("metrics", "plots"),  # Frechet distance and Gaussian KL; figures
    ("adapters",),  # EDM, diffusers, flow, k-diffusion / A1111, ComfyUI models
    ("digits", "digits16", "comparison", "tuning", "demo"),  # the shipped digits model; the schedule benchmark; the demo
    ("comfyui", "cli", "__init__"),  # ComfyUI nodes; the command line; the public API
)
LAYER = {m: i for i, layer in enumerate(LAYERS) for m in layer}


def module_of(path):
    """The map's name of a file of the package: its top-level module or sub-package."""
    rel = path.relative_to(PACKAGE).with_suffix("")
    return rel.parts[0]


def _targets(node, path):
    """The package's top-level modules a ``from``/``import`` statement names."""
    if isinstance(node, ast.Import):
        return [a.name.split(".")[1] for a in node.names if a.name.startswith("entropic_fast.")]
    if not isinstance(node, ast.ImportFrom):
        return []
    depth = len(path.relative_to(PACKAGE).parts) - 1  # 0 for a top-level module
    if node.level == 0:
        parts = (node.module or "").split(".")
        if parts[0] != "entropic_fast":
            return []
        parts = parts[1:]
    elif node.level - 1 == depth:  # relative to the package's root
        parts = (node.module or "").split(".") if node.module else []
    else:
        return [module_of(path)]  # within the sub-package
    if parts and parts[0]:
        return [parts[0]]
    return [a.name for a in node.names]


def imports():
    """``{(importer, imported)}`` of the package's modules, at any depth of the code (lazy imports too)."""
    out = set()
    for path in PACKAGE.rglob("*.py"):
        me = module_of(path)
        for node in ast.walk(ast.parse(path.read_text())):
            for t in _targets(node, path):
                if t != me:
                    out.add((me, t))
    return out


def backward(edges):
    """The imports of a later module by an earlier one (or of a module the map does not place)."""
    bad = []
    for a, b in sorted(edges):
        if a not in LAYER or b not in LAYER:
            bad.append(f"{a} -> {b}: not on the map")
        elif LAYER[b] > LAYER[a]:
            bad.append(f"{a} (layer {LAYER[a]}) imports {b} (layer {LAYER[b]}), later in the data flow")
    return bad


def long_functions(limit=FUNCTION_LIMIT):
    """``(file:function, lines)`` of the functions over ``limit`` lines (docstring included), Triton kernels aside."""
    rows = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for n in ast.walk(ast.parse(path.read_text())):
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and \
                    not any("jit" in ast.unparse(d) for d in n.decorator_list):
                k = n.end_lineno - n.lineno + 1
                if k > limit:
                    rows.append((f"{path.relative_to(ROOT)}:{n.name}", k))
    return rows


def _own_names():
    """The names of every function and class the package defines (calls to them are the package's own)."""
    names = set()
    for path in PACKAGE.rglob("*.py"):
        for n in ast.walk(ast.parse(path.read_text())):
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(n.name)
    return names


def positional_calls(limit=POSITIONAL_LIMIT):
    """``(file:line, callee, count)`` of the calls to the package's own functions with more than ``limit``
    positional arguments (a swap there is silent: keywords say which is which). Triton kernel launches aside."""
    own, rows = _own_names(), []
    for path in sorted(PACKAGE.rglob("*.py")):
        for n in ast.walk(ast.parse(path.read_text())):
            if not isinstance(n, ast.Call) or isinstance(n.func, ast.Subscript):  # kernel[grid](...): a launch
                continue
            name = n.func.attr if isinstance(n.func, ast.Attribute) else getattr(n.func, "id", None)
            count = sum(not isinstance(a, ast.Starred) for a in n.args)
            if name in own and count > limit:
                rows.append((f"{path.relative_to(ROOT)}:{n.lineno}", name, count))
    return rows


def run_methods():
    """``{method: lines}`` of ``estimate.Run``."""
    tree = ast.parse((PACKAGE / "estimate.py").read_text())
    run = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Run")
    return {n.name: n.end_lineno - n.lineno + 1 for n in run.body if isinstance(n, ast.FunctionDef)}


ROW_OFFSET = re.compile(r"\b[1-3] \* n_sigmas\b|torch\.stack\(\[err, err \* err")  # a plain row written by hand


def _lines_matching(pattern, owner, package=None):
    """``file:line`` of the lines matching ``pattern`` in every file of the package but its ``owner``."""
    rows = []
    for path in sorted((package or PACKAGE).rglob("*.py")):
        if path.name == owner:
            continue
        for k, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                rows.append(f"{path.relative_to((package or PACKAGE).parent)}:{k}")
    return rows


def row_offsets(package=None):
    """``file:line`` of the places outside ``sums`` that write the plain part's rows at hand-written offsets (the
    layout's one owner is ``sums``: kernels take SUM, SUMSQ, COUNT, NONFINITE from it)."""
    return _lines_matching(ROW_OFFSET, "sums.py", package)


RUN_LOOP = re.compile(r"signals\.(deferring|poll)\(|\b(ckpt|checkpoint)\.write\(")  # what only a run loop does


def run_loops(package=None):
    """``file:line`` of the places outside ``runtime`` that defer signals, poll them or write a checkpoint: a second
    resumable run loop (the runtime is written once; profile, compare and tune runs are its clients)."""
    return _lines_matching(RUN_LOOP, "runtime.py", package)


def report():
    """The measures as lines, and whether they all hold."""
    back, long, calls, offsets = backward(imports()), long_functions(), positional_calls(), row_offsets()
    loops = run_loops()
    methods = run_methods()
    over = {k: v for k, v in methods.items() if v > RUN_METHOD_LIMIT}
    lines = [f"functions over {FUNCTION_LIMIT} lines (Triton kernels aside): {len(long)}",
             *(f"  {name}: {k}" for name, k in long),
             f"estimate.Run: {len(methods)} methods, the longest {max(methods.values())} lines "
             f"({max(methods, key=methods.get)}); over {RUN_METHOD_LIMIT}: {len(over)}",
             f"backward imports: {len(back)}", *(f"  {b}" for b in back),
             f"calls of the package's own functions with over {POSITIONAL_LIMIT} positional arguments: {len(calls)}",
             *(f"  {where}: {name} ({k})" for where, name, k in calls),
             f"plain rows written at offsets outside sums: {len(offsets)}", *(f"  {w}" for w in offsets),
             f"run loops outside runtime (signals deferred or polled, checkpoints written): {len(loops)}",
             *(f"  {w}" for w in loops)]
    return lines, not (back or long or over or calls or offsets or loops)


if __name__ == "__main__":
    text, ok = report()
    print("\n".join(text))
    sys.exit(0 if ok else 1)
