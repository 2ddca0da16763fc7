"""The house's rules, checked on the code itself: imports point down only, no import cycle anywhere, the
maths never imports Kafka, and every package folder is installed under the ``streamrec`` namespace."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = {"streamrec": "streamrec", "models": "streamrec.models", "stream": "streamrec.stream",
           "consumers": "streamrec.consumers", "producers": "streamrec.producers"}

# Lower rank = lower floor. A module may import from its own floor (no cycle) or any floor below.
FLOORS: list[tuple[str, int]] = [
    ("streamrec.models.errors", 0), ("streamrec.models.events", 0), ("streamrec.models.decay", 0),
    ("streamrec.models.timeunits", 0), ("streamrec.models", 0),
    ("streamrec.models.base", 1), ("streamrec.models.catalog", 1),
    ("streamrec.models.serving", 2),
    ("streamrec.models.online", 3),
    ("streamrec.models.engine", 4),
    ("streamrec.models.evaluation", 5),
    ("streamrec.stream", 10),
    ("streamrec.producers", 20), ("streamrec.consumers", 20),
    ("streamrec", 30),
]
KAFKA = ("kafka", "streamrec.stream", "streamrec.consumers", "streamrec.producers", "streamrec.bench")


def floor(module: str) -> int:
    best = max((p for p, _ in FLOORS if module == p or module.startswith(p + ".")), key=len)
    return dict(FLOORS)[best]


def modules() -> dict[str, Path]:
    out = {}
    for folder, name in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join([name, *parts])] = path
    return out


def imports(path: Path, module: str, known: set[str]) -> set[str]:
    """Every streamrec module ``path`` imports, at the top or inside a function, or under TYPE_CHECKING."""
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        for n in names:
            while n and n not in known:
                n = n.rpartition(".")[0]
            if n and n != module:
                found.add(n)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {m: imports(p, m, known) for m, p in mods.items()}


def test_the_walk_sees_the_house() -> None:
    g = graph()
    assert len(g) > 80 and "streamrec.models.engine.recommender" in g
    assert "streamrec.models.serving.state" in g["streamrec.models.engine.recommender"]


def test_imports_point_down() -> None:
    upward = sorted(f"{m} -> {d}" for m, deps in graph().items() for d in deps
                    if floor(d) > floor(m) and not d.startswith(m + "."))
    assert not upward, "imports that run back up:\n" + "\n".join(upward)


def test_models_never_import_kafka() -> None:
    mods = modules()
    bad = []
    for m, path in mods.items():
        if not m.startswith("streamrec.models"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            bad += [f"{m} imports {n}" for n in names if n.split(".")[0] == "kafka" or n.startswith(KAFKA[1:])]
    assert not bad, "\n".join(bad)


def test_no_import_cycle() -> None:
    g = graph()
    # package __init__ files re-export their children; an edge child -> parent package is not a cycle of logic
    edges = {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in g.items()}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(edges.get(m, ())):
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_every_package_folder_is_installed() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    packages = {m for m, p in modules().items() if p.name == "__init__.py"}
    assert packages == listed, f"not installed: {sorted(packages - listed)}; no folder: {sorted(listed - packages)}"
    assert config["package-dir"] == {v: k for k, v in FOLDERS.items()}


def test_packages_document_themselves() -> None:
    """Each package's ``__init__`` opens with a one-line docstring and declares ``__all__``."""
    missing = []
    for m, path in modules().items():
        if path.name != "__init__.py":
            continue
        tree = ast.parse(path.read_text())
        doc = ast.get_docstring(tree)
        has_all = any(isinstance(n, ast.Assign) and any(getattr(t, "id", "") == "__all__" for t in n.targets)
                      for n in tree.body)
        if not doc or doc.startswith("TODO") or not has_all:
            missing.append(m)
    assert not missing, f"packages without a docstring or __all__: {missing}"
