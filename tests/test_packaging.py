"""What a wheel installs: every package of the source tree is listed in pyproject.toml (setuptools installs
only the listed ones; an editable install hides a missing one, a wheel does not)."""
from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_installed_by_a_wheel():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "mmretrieval").rglob("__init__.py")}
    assert found - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"


def _imports(path: Path, modules: set[str], name: str) -> set[str]:
    """The package's modules `name` imports, at its top or inside functions (an import under TYPE_CHECKING
    runs never, and does not count); `from . import x` of a submodule x is an import of x, not of the package."""
    import ast

    tree = ast.parse(path.read_text())
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and "TYPE_CHECKING" in ast.unparse(block.test) for b in block.body for n in ast.walk(b)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            base = ".".join(parts[:len(parts) - node.level + 1] + [node.module] if node.level and node.module else
                            parts[:len(parts) - node.level + 1] if node.level else [node.module or ""])
            subs = {f"{base}.{a.name}" for a in node.names} & modules
            out |= subs if len(subs) == len(node.names) else {base} & modules | subs
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names} & modules
    return out - {name}


def test_no_module_imports_one_that_imports_it_back():
    """Layers import downwards only, and inside a layer no two modules need each other (imports inside functions
    included): a cycle is fixed by a move, e.g. `space/cache.py` beside `weights.py` and `open_clip_catalog.py`."""
    files = {".".join(p.with_suffix("").relative_to(ROOT).parts).removesuffix(".__init__"): p
             for p in (ROOT / "mmretrieval").rglob("*.py")}
    graph = {m: _imports(p, set(files), m) for m, p in files.items()}

    def reaches(start: str, goal: str) -> list[str] | None:
        seen, stack = {start}, [[start]]
        while stack:
            path = stack.pop()
            for nxt in graph[path[-1]]:
                if nxt == goal:
                    return path + [nxt]
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(path + [nxt])
        return None

    cycles = [c for m in sorted(graph) for n in sorted(graph[m]) if (c := reaches(n, m)) and c[-1] == m]
    assert cycles == [], "import cycles: " + "; ".join(" -> ".join([c[-1], *c]) for c in cycles[:5])
