"""The layout's rules (docs/architecture.md), checked on the modules as they are: which package may import
which, where torch may load, and how long a module may grow.

Imports are probed in a child Python (this process's sys.modules is full of what other tests loaded). The
child imports the modules of one rule one by one, forgetting every bnscope module between them, so each
module's own imports are what it records; torch cannot be forgotten, so a rule about torch names the first
module that loaded it.
"""

import ast
import importlib.util
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = {"bnscope": REPO / "app", "bnscope.models": REPO / "models"}  # pyproject's package-dir
MAX_LINES = 400
LONGER: dict[str, int] = {}  # a module allowed more lines, and why (none today; models/fused.py's step may be one)

PROBE = """
import importlib, json, sys
seen = {}
for name in sys.argv[1:]:
    for key in [key for key in sys.modules if key == "bnscope" or key.startswith("bnscope.")]:
        del sys.modules[key]
    torch_before = "torch" in sys.modules
    importlib.import_module(name)
    seen[name] = {"bnscope": sorted(key for key in sys.modules if key.startswith("bnscope.")),
                  "torch": "torch" in sys.modules, "torch_before": torch_before}
print(json.dumps(seen))
"""


def modules(package: str) -> list[str]:
    """Every module of a package of the repository, found on disk (not imported here)."""
    top = "bnscope.models" if package.startswith("bnscope.models") else "bnscope"
    root = PACKAGES[top].joinpath(*package.removeprefix(top).split(".")[1:])
    names = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        names.append(".".join((package, *(parts[:-1] if parts[-1] == "__init__" else parts))))
    return names


def probe(names: list[str]) -> dict:
    result = subprocess.run([sys.executable, "-c", PROBE, *names], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


def test_train_and_models_import_nothing_of_the_server_or_the_watched_process():
    """train/ runs inside a worker: no HTTP, SSE, SQLite or process boundary. models/ stands alone."""
    seen = probe(modules("bnscope.train") + modules("bnscope.models"))
    server = ("bnscope.runs", "bnscope.storage", "bnscope.stream", "bnscope.api", "bnscope.watched")
    for name, found in seen.items():
        if name.startswith("bnscope.models"):
            outside = [m for m in found["bnscope"] if not m.startswith("bnscope.models")]
            assert not outside, f"{name} imports {outside}: models/ imports nothing from the package"
        else:
            crossing = [m for m in found["bnscope"] if m.startswith(server)]
            assert not crossing, f"{name} imports {crossing}: train/ knows nothing of the server"


def test_the_server_side_loads_no_torch_at_import():
    """The server never runs a step: api/, runs/, storage/ and stream/ load torch only inside a function
    (a sample, a sweep's first plan), and watched/process (a watched run's recording child) never does."""
    names = [
        name
        for package in ("bnscope.api", "bnscope.runs", "bnscope.storage", "bnscope.stream")
        for name in modules(package)
        if name != "bnscope.runs.ray" or importlib.util.find_spec("ray") is not None  # the [ray] extra
    ]
    seen = probe(names + ["bnscope.watched.process"])
    assert seen  # every module was probed
    for name, found in seen.items():
        assert not found["torch"], f"importing {name} loads torch" + (
            " (or one before it)" if found["torch_before"] else ""
        )


@pytest.mark.parametrize("package", list(PACKAGES))
def test_no_module_is_over_the_line_budget(package):
    for path in sorted(PACKAGES[package].rglob("*.py")):
        name = path.relative_to(REPO).as_posix()
        lines = len(path.read_text().splitlines())
        assert lines <= LONGER.get(name, MAX_LINES), f"{name}: {lines} lines, over {MAX_LINES}: split it by topic"


def test_every_package_folder_is_in_pyprojects_packages():
    """pyproject lists its packages by name: a folder missing there is missing from the wheel."""
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        ".".join((top, *init.parent.relative_to(root).parts))
        for top, root in PACKAGES.items()
        for init in root.rglob("__init__.py")
    }
    assert found <= listed, f"packages not in pyproject.toml: {sorted(found - listed)}"


def test_the_tests_mirror_the_packages():
    """tests/<name>/ holds the tests of bnscope.<name> (or bnscope.models); besides them only tests/page/, the
    page in Chromium. Top-level modules' tests and the repository's (layout, bench, examples) are in tests/."""
    folders = {path.parent.name for path in (REPO / "tests").glob("*/test_*.py")}
    packages = {init.parent.name for init in PACKAGES["bnscope"].glob("*/__init__.py")} | {"models", "page"}
    assert folders <= packages, f"test folders that name no package: {sorted(folders - packages)}"


def test_ruff_format_owns_the_style():
    """One formatter for every Python file, no exceptions marked in the code: a diff is about what changed."""
    files = subprocess.run(["git", "ls-files", "*.py"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    markers = ("fmt: " + "skip", "fmt: " + "off")  # spelled apart, or this file would hold them
    marked = [f for f in files.split() if any(m in (REPO / f).read_text() for m in markers)]
    assert not marked, f"formatter exceptions in {marked}"
    check = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", "."], cwd=REPO, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr


MAX_FUNCTION_LINES = 50
LONG_FUNCTIONS = {"models/fused.py": {"__call__"}, "models/stacked.py": {"step"}}  # the lecture's pass, top to bottom


def test_no_function_is_over_fifty_lines():
    too_long = []
    for path in sorted([*(REPO / "app").rglob("*.py"), *(REPO / "models").rglob("*.py")]):
        name = path.relative_to(REPO).as_posix()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES and node.name not in LONG_FUNCTIONS.get(name, ()):
                    too_long.append(f"{name}:{node.lineno} {node.name} ({lines} lines)")
    assert not too_long, f"split these by what they do: {too_long}"
