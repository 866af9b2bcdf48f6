"""The package's layers hold: import-linter's contract (pyproject.toml) is kept and would catch
an upward import, no module takes part in an import circle, and every module imports alone."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

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
    assert "Contracts: 2 kept, 0 broken." in result.stdout
    assert "The lean inference path imports no PyTorch" in result.stdout


def test_the_forbidden_contract_catches_torch_on_the_lean_path(tmp_path: Path) -> None:
    """A lean module importing PyTorch, even inside a function, breaks the contract."""
    shutil.copytree(SRC / "pneumonia", tmp_path / "pneumonia")
    runtime = tmp_path / "pneumonia" / "inference" / "runtime.py"
    runtime.write_text(
        runtime.read_text() + "\n\ndef sneaky() -> None:\n    import torch  # noqa\n"
    )
    result = lint_imports(tmp_path)
    assert result.returncode == 1
    assert "pneumonia.inference.runtime -> torch" in result.stdout


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


def package_graph() -> grimp.ImportGraph:
    """Every import of the package: at the top, inside functions and under TYPE_CHECKING."""
    return grimp.build_graph("pneumonia", exclude_type_checking_imports=False, cache_dir=None)


def test_no_module_takes_part_in_an_import_circle() -> None:
    graph = package_graph()
    edges = {m: graph.find_modules_directly_imported_by(m) for m in graph.modules}
    assert len(edges) > 50  # the whole package was read
    assert circles(edges) == []


STAGES = ("data", "inference", "modeling", "evaluation", "training", "monitoring", "serving")


def test_the_core_imports_nothing_from_the_stages() -> None:
    graph = package_graph()
    core = [m for m in graph.modules if m.startswith("pneumonia.core")]
    upward = {
        (m, target)
        for m in core
        for target in graph.find_modules_directly_imported_by(m)
        if target.split(".")[1:2] and target.split(".")[1] in (*STAGES, "cli", "api", "demo")
    }
    assert upward == set()


def drawn_stages(page: str) -> dict[str, str]:
    """The architecture drawing's boxes, top to bottom: stage -> the words in its box."""
    drawing = page.split("```text", 1)[1].split("```", 1)[0]
    boxes: dict[str, str] = {}
    current: list[str | None] = [None, None]  # the stage of the left and right column
    for line in drawing.splitlines():
        if "│" not in line:
            current = [None, None]  # a border: the next line starts new boxes
            continue
        cells = [c.strip() for c in line.strip().strip("│").split("│")]
        for k, cell in enumerate(cells[:2]):
            match = re.match(r"(\w+)(?:/|\.py)\s", cell + " ")
            if match:
                current[k] = match.group(1)
                boxes.setdefault(match.group(1), "")
            if current[k]:
                boxes[current[k]] += " " + cell  # type: ignore[index]
    return boxes


def test_the_architecture_page_names_every_module_in_its_stage() -> None:
    """docs/architecture.md draws every stage with every one of its modules, top to bottom in
    the order of the layers contract."""
    boxes = drawn_stages((REPO / "docs" / "architecture.md").read_text())
    for stage in (*STAGES, "core", "cli"):
        names = sorted(p.stem for p in (SRC / "pneumonia" / stage).glob("*.py"))
        words = set(re.findall(r"\w+", boxes.get(stage, "")))
        assert [n for n in names if n != "__init__" and n not in words] == [], stage
    contract = (REPO / "pyproject.toml").read_text().split("layers = [", 1)[1].split("]", 1)[0]
    level = {  # a stage's layer, top (0) to bottom; side-by-side stages share one
        name.removeprefix("pneumonia."): k
        for k, layer in enumerate(re.findall(r'"([^"]+)"', contract))
        for name in layer.split(" | ")
    }
    drawn = [level[stage] for stage in boxes if stage in level]
    assert drawn == sorted(drawn) and len(drawn) == len(level)


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


@pytest.mark.slow
def test_every_module_imports_alone() -> None:
    """Each module imports in a fresh interpreter (as far as this package goes), so that none
    leans on another having been imported first."""
    names = [m for m in modules() if not m.endswith("__main__")]  # that one runs the CLI
    assert "pneumonia.core.bundle" in names and "pneumonia.cli" in names
    result = subprocess.run([sys.executable, "-c", ALONE, *names], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout == ""


@pytest.mark.slow
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
