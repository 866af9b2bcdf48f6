"""The package's layers hold: import-linter's contract (pyproject.toml) is kept and would catch
an upward import, no module takes part in an import circle, and every module imports alone."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp

from conftest import REPO

SRC = REPO / "src"


def lint_imports(src: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` with the project's contracts, on the package found under `src`."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    command = [str(Path(sys.prefix) / "bin" / "lint-imports"), "--no-cache"]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)


def test_the_layers_contract_is_kept() -> None:
    result = lint_imports(SRC)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "Contracts: 1 kept, 0 broken." in result.stdout


def test_the_contract_catches_an_upward_import(tmp_path: Path) -> None:
    """The bundle, beneath every stage, importing serving (above it) breaks the contract."""
    shutil.copytree(SRC / "pneumonia", tmp_path / "pneumonia")
    bundle = tmp_path / "pneumonia" / "core" / "bundle.py"
    bundle.write_text(bundle.read_text() + "\nfrom pneumonia.serving import serve  # noqa\n")
    result = lint_imports(tmp_path)
    assert result.returncode == 1
    assert "pneumonia.core.bundle -> pneumonia.serving.serve" in result.stdout


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in edges.get(node, set()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return sorted(found)


def test_circles_finds_a_known_circle() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e", "d"}}
    assert circles(edges) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_no_module_takes_part_in_an_import_circle() -> None:
    graph = grimp.build_graph("pneumonia", exclude_type_checking_imports=True, cache_dir=None)
    edges = {m: graph.find_modules_directly_imported_by(m) for m in graph.modules}
    assert len(edges) > 50  # the whole package was read
    assert circles(edges) == []


def modules() -> list[str]:
    package = SRC / "pneumonia"
    names = [p.relative_to(SRC).with_suffix("") for p in package.rglob("*.py")]
    return sorted(".".join(n.parts).removesuffix(".__init__") for n in names)


# Imports each module in a forked child of an interpreter that holds the third-party libraries
# but none of pneumonia's modules: alone, as far as this package goes, in milliseconds each.
ALONE = """
import os, sys, traceback
import lightning, timm, torch, sklearn, fastapi, onnxruntime, mlflow, matplotlib.pyplot  # noqa
assert not [m for m in sys.modules if m.startswith("pneumonia")]
for module in sys.argv[1:]:
    pid = os.fork()
    if pid == 0:
        try:
            __import__(module)
        except BaseException:
            print(module, traceback.format_exc().splitlines()[-1], flush=True)
            os._exit(1)
        os._exit(0)
    os.waitpid(pid, 0)
"""


def test_every_module_imports_alone() -> None:
    """Each module imports in a fresh interpreter (as far as this package goes), so that none
    leans on another having been imported first."""
    names = [m for m in modules() if not m.endswith("__main__")]  # that one runs the CLI
    assert "pneumonia.core.bundle" in names and "pneumonia.cli" in names
    result = subprocess.run([sys.executable, "-c", ALONE, *names], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout == ""


def test_the_import_check_reports_a_module_that_fails_alone(tmp_path: Path) -> None:
    """A module that fails when imported first is named (the check can fail)."""
    (tmp_path / "leans.py").write_text("import sys\nsys.modules['pneumonia.api'].train\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", ALONE, "leans", "pneumonia.core"],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert result.stdout.startswith("leans KeyError")
    assert "pneumonia.core" not in result.stdout


def test_no_module_is_over_400_lines() -> None:
    sizes = {m: len((SRC / (m.replace(".", "/") + ".py")).read_text().splitlines()) for m in
             modules() if (SRC / (m.replace(".", "/") + ".py")).is_file()}  # fmt: skip
    assert len(sizes) > 50
    assert {m: n for m, n in sizes.items() if n > 400} == {}
