"""The house plan holds: module-level imports point down the layers, and none form a cycle.

Layers, low to high: checks -> backend -> ops -> nn, optim -> data -> training -> the fronts
(bench, cli, demo, sklearn, the package itself). A lazy import inside a function (the
backend building its ops, the CLI loading the benchmark) is allowed to reach up.
"""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "gpunet"
LAYERS = {"checks": 0, "backend": 1, "ops": 2, "nn": 3, "optim": 3, "data": 4, "training": 5,
          "distributed": 5,
          "bench": 6, "cli": 6, "cli_setup": 6, "demo": 6, "sklearn": 6, "sweep": 6,
          "__init__": 7,
          "__main__": 7}


def _module_name(path):
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _room(module):
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def _top_level_imports(path):
    """Absolute gpunet modules imported when ``path`` is imported (not inside functions)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()

    def visit(nodes):
        for node in nodes:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                if node.module:
                    found.add(target)
                else:  # from . import a, b: the submodules (the parent is already loaded)
                    found.update(f"{target}.{alias.name}" for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("gpunet"):
                found.add(node.module)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("gpunet"))
            for field in ("body", "orelse", "finalbody", "handlers"):
                visit(getattr(node, field, []) or [])
    visit(ast.parse(path.read_text()).body)
    known = {_module_name(p) for p in PACKAGE.rglob("*.py")}
    return {t for t in found if t in known}


def _graph():
    return {_module_name(p): _top_level_imports(p) for p in PACKAGE.rglob("*.py")}


def test_every_room_has_a_layer():
    rooms = {_room(m) for m in _graph()}
    assert rooms <= LAYERS.keys(), f"place {rooms - LAYERS.keys()} in LAYERS"


def test_imports_point_down():
    upward = [f"{m} -> {t}" for m, targets in _graph().items() for t in targets
              if LAYERS[_room(t)] > LAYERS[_room(m)]]
    assert not upward, "module-level imports that reach up a layer:\n" + "\n".join(upward)


def test_no_import_cycle():
    graph = _graph()
    state = {}

    def walk(node, trail):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycle = trail[trail.index(nxt):] + [nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                walk(nxt, trail + [nxt])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            walk(module, [module])
