"""The house rules: layers that point one way, no import cycles, no module over 400 lines.

Every import statement of the package counts, the ones inside functions too: a late import that
dodges a cycle at run time is still a cycle in the design. Importing ``a.b.c`` also runs the
packages ``a`` and ``a.b``, so those count as imported as well.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "drx_workflows"
MAX_LINES = 400

# The layer map, lowest first: a module may import only modules of its own layer or a lower one.
# Science stages are ordered as data flows through them; each is pure functions on structures,
# energies and configurations (no store, no FireWorks).
LAYERS = [
    ("base", ["errors", "fileio", "constants", "compositions"]),
    ("science: enumeration", ["enumeration"]),
    ("science: calculations", ["vasp", "slices"]),
    ("science: potentials", ["mliap"]),
    ("science: selection", ["selection"]),
    ("science: voltages", ["voltages"]),
    ("science: tables", ["analysis"]),
    ("persistence", ["store"]),
    ("orchestration", ["pipeline"]),
    ("interfaces", ["cli", "demo"]),
]
# FireWorks' workflow classes belong to orchestration alone (the store may build a LaunchPad).
FIREWORKS_CLASSES = {"Firework", "Workflow", "FiretaskBase", "FWAction", "DupeFinderBase"}
FIREWORKS_LAYERS = {"orchestration"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ("drx_workflows",) + path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _targets(module: str, node, is_package: bool) -> list[str]:
    """Every dotted name an import statement may load (``from X import y``: X and X.y)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    return [prefix] + [f"{prefix}.{a.name}" for a in node.names]


def import_graph() -> dict[str, set[str]]:
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for module, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for name in _targets(module, node, path.name == "__init__.py"):
                parts = name.split(".")
                # the module itself and every package above it run on import
                for k in range(1, len(parts) + 1):
                    target = ".".join(parts[:k])
                    if target in mods and target != module and not module.startswith(target + "."):
                        graph[module].add(target)
    return graph


def layer_of(module: str) -> tuple[int, str]:
    rest = module.split(".")[1:]
    for rank, (name, roots) in enumerate(LAYERS):
        if rest and rest[0] in roots:
            return rank, name
    if not rest:
        return -1, "package"
    raise AssertionError(f"{module} is in no layer: add its folder to LAYERS in {__file__}")


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan)."""
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_function_local_imports():
    graph = import_graph()
    # cli.main registers the subcommand modules inside a function
    assert "drx_workflows.cli.relax" in graph["drx_workflows.cli.main"]
    # a relative import inside a function resolves like an absolute one
    assert _targets("drx_workflows.a.b", ast.parse("from .c import d").body[0], False) == [
        "drx_workflows.a.c", "drx_workflows.a.c.d"]


def test_no_import_cycles():
    cycles = _cycles(import_graph())
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_layers_point_one_way():
    upward = []
    for module, targets in import_graph().items():
        rank, name = layer_of(module)
        for target in targets:
            t_rank, t_name = layer_of(target)
            if t_rank > rank:
                upward.append(f"{module} ({name}) imports {target} ({t_name})")
    assert not upward, "imports into a higher layer:\n" + "\n".join(sorted(upward))


def test_fireworks_classes_only_in_orchestration():
    misplaced = []
    for module, path in _modules().items():
        _, name = layer_of(module)
        if name in FIREWORKS_LAYERS:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "fireworks":
                used = {a.name for a in node.names} & FIREWORKS_CLASSES
                if used:
                    misplaced.append(f"{module} ({name}) imports {', '.join(sorted(used))}")
    assert not misplaced, "\n".join(misplaced)


def test_no_module_over_400_lines():
    long = {m: n for m, p in _modules().items() if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_every_folder_is_in_the_layer_map():
    for module in _modules():
        layer_of(module)
