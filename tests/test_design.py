"""The wings import one way (docs/design.md): core/ knows nothing of files, tasks or the command
line; store/ nothing of training; train/ nothing of the commands; tasks/ only the method."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "trbert"
ALLOWED = {  # wing -> what its modules may import from trbert (besides themselves)
    "core": {"core", "errors"},
    "store": {"core", "store", "errors"},
    "train": {"core", "store", "train", "tasks", "config", "errors"},
    "tasks": {"core", "tasks", "config", "errors"},
    "tools": {"core", "store", "train", "tasks", "tools", "config", "errors"},
    "releases": {"releases", "store", "tasks", "tools", "errors"},  # of tools/, prepare.py alone (below)
}


def _imports(path: Path) -> set[str]:
    """The trbert wings and modules a file imports (relative imports resolved, lazy ones included)."""
    package = path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - node.level + 1]
            target = [*base, *(node.module.split(".") if node.module else [])]
            names = [target] if node.module else [[*target, a.name] for a in node.names]
            found |= {n[1] for n in names if len(n) > 1}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [node.module] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            found |= {m.split(".")[1] for m in modules if m and m.startswith("trbert.") and "." in m}
    return found


@pytest.mark.parametrize("wing", sorted(ALLOWED))
def test_the_wings_import_one_way(wing):
    wrong = {
        str(path.relative_to(PACKAGE)): sorted(_imports(path) - ALLOWED[wing])
        for path in (PACKAGE / wing).glob("*.py")
        if _imports(path) - ALLOWED[wing]
    }
    assert not wrong, wrong


def test_config_and_errors_stand_alone_and_releases_use_only_the_prepare_helpers():
    assert not _imports(PACKAGE / "config.py") and not _imports(PACKAGE / "errors.py")
    for path in (PACKAGE / "releases").glob("*.py"):
        tools = [
            n
            for n in ast.walk(ast.parse(path.read_text()))
            if isinstance(n, ast.ImportFrom) and "tools" in (n.module or "")
        ]
        assert all(n.module.endswith("tools.prepare") for n in tools), path


def test_the_budgets_hold():
    """core/ at most 1,500 lines; everything but the release converters at most 7,200; no function
    over 50 lines."""
    core = sum(len(p.read_text().splitlines()) for p in (PACKAGE / "core").glob("*.py"))
    rest = sum(len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py") if "releases" not in p.parts)
    assert core <= 1500 and rest <= 7200, (core, rest)
    long = [
        f"{path.relative_to(PACKAGE)}:{node.name}"
        for path in PACKAGE.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef) and node.end_lineno - node.lineno >= 50
    ]
    assert not long, long
