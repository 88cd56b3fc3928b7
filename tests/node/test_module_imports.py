"""Import structure the code relies on, read from the source: the CLI's modules import each other
without a cycle (lazy imports inside functions included), command-line parsing lives in node/cli,
and the market's ordering does not reach into an HTTP routes module."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def module_name(path: Path, root: Path = ROOT) -> str:
    """`node.cli.plan_cmd` for node/cli/plan_cmd.py."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path) -> set[str]:
    """Every module `path` imports, at any depth of its code (names imported from a module count
    as that module and as `module.name`, so submodules are found either way)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def cycles(package: Path, root: Path = ROOT) -> list[list[str]]:
    """Import cycles among the modules of `package` (each as the path around it)."""
    modules = {module_name(p, root): p for p in package.rglob("*.py")}
    graph = {name: sorted(imported(path) & modules.keys() - {name}) for name, path in modules.items()}
    found: list[list[str]] = []
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = "open"
        for nxt in graph[name]:
            if state.get(nxt) == "open":
                found.append([*path[path.index(nxt) :], nxt] if nxt in path else [name, nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    return found


def test_the_cli_has_no_import_cycle() -> None:
    """No module of node/cli imports, directly or through others, one that imports it back
    (`plan` and `plan sweep` share node.cli.plan_files instead of importing each other)."""
    assert cycles(ROOT / "node" / "cli") == []


def test_the_cycle_check_sees_lazy_imports(tmp_path: Path) -> None:
    """The cycle check finds a cycle closed by an import inside a function."""
    package = tmp_path / "node" / "cli"
    package.mkdir(parents=True)
    (package / "a.py").write_text("from node.cli.b import x\n", encoding="utf-8")
    (package / "b.py").write_text("def x():\n    from node.cli.a import y\n", encoding="utf-8")
    assert cycles(package, tmp_path) == [["node.cli.a", "node.cli.b", "node.cli.a"]]
    (package / "b.py").write_text("def x():\n    pass\n", encoding="utf-8")
    assert cycles(package, tmp_path) == []


def test_argument_parsing_lives_in_the_cli() -> None:
    """Only node/cli (and the entry points it calls) use argparse; node/peering does not."""
    users = {
        module_name(path)
        for path in (ROOT / "node").rglob("*.py")
        if "argparse" in imported(path) and "cli" not in path.relative_to(ROOT).parts
    }
    assert not {name for name in users if name.startswith("node.peering")}, users


def test_the_market_does_not_import_http_routes() -> None:
    """The market's modules import no `routes` module (views come from node.trading.views); only its
    component, the HTTP edge, wires itself to the trading routes."""
    for path in (ROOT / "node" / "market").glob("*.py"):
        if path.name == "component.py":
            continue
        assert not {name for name in imported(path) if name.split(".")[-1] == "routes"}, path
