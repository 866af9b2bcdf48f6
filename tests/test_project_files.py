"""The project's framework files: CI workflow = .ci/run = the README, tasks, licence, docs."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def ci_commands() -> list[str]:
    """The commands .ci/run runs after installing Chromium: set-up and tests."""
    lines = (REPO / ".ci" / "run").read_text().splitlines()
    return [
        ln for ln in lines if ln.startswith(("python3.11 -m venv", ".venv/bin/python -m pytest"))
    ]


def test_the_workflow_runs_what_ci_and_the_readme_run() -> None:
    commands = ci_commands()
    assert len(commands) == 2
    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "tests.yaml").read_text())
    steps = [s.get("run", "").strip() for job in workflow["jobs"].values() for s in job["steps"]]
    assert [s for s in steps if s in commands] == commands  # the same commands, in order
    assert ".venv/bin/mkdocs build --strict" in steps
    setup = next(
        s
        for job in workflow["jobs"].values()
        for s in job["steps"]
        if "setup-python" in s.get("uses", "")
    )
    assert setup["with"]["python-version"] == "3.11"
    readme = (REPO / "README.md").read_text()
    assert all(c in readme for c in commands)
    dependabot = yaml.safe_load((REPO / ".github" / "dependabot.yaml").read_text())
    assert {u["package-ecosystem"] for u in dependabot["updates"]} == {"pip", "github-actions"}


def test_tasks_are_thin_calls_of_the_documented_commands() -> None:
    listed = subprocess.run(
        [sys.executable, "-m", "invoke", "--list"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for name in ("setup", "test", "lint", "docs", "demo", "train", "serve", "docker"):
        assert re.search(rf"^\s+{name}\s", listed, re.M), name

    def dry(*args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "invoke", "--dry", *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        )
        return re.sub(r"\x1b\[[0-9;]*m", "", result.stdout).strip()

    assert dry("test") == ci_commands()[1]
    assert dry("test", "--fast") == f"{ci_commands()[1]} -m 'not slow'"
    assert dry("setup") == ci_commands()[0]
    assert dry("lint") == ".venv/bin/pre-commit run --all-files"
    assert dry("docs") == ".venv/bin/mkdocs build --strict"
    assert dry("docker") == "docker build -f dockerfiles/api.Dockerfile -t pneumonia-api ."
    assert (
        "docker build -f dockerfiles/api.Dockerfile -t pneumonia-api ."
        in (REPO / "dockerfiles" / "api.Dockerfile").read_text()
    )
    assert dry("train", "--config", "configs/experiments/recipes/quick.yaml") == (
        ".venv/bin/pneumonia train --config configs/experiments/recipes/quick.yaml"
    )


def test_code_and_data_licences_are_separate() -> None:
    licence = (REPO / "LICENSE").read_text()
    assert (
        licence.startswith("                                 Apache License")
        and "Version 2.0" in licence
    )
    assert 'license = { text = "Apache-2.0" }' in (REPO / "pyproject.toml").read_text()
    readme = (REPO / "README.md").read_text()
    assert "CC BY 4.0" in readme and "Apache" in readme


@pytest.mark.slow
def test_the_docs_site_builds_strictly(tmp_path: Path) -> None:
    """Every page, the API reference from the docstrings, the model card: no broken link."""
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO, capture_output=True, text=True, check=False,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    site = tmp_path / "site"
    api = (site / "api" / "index.html").read_text()
    assert "load_bundle" in api and "create_model" in api and "Mahalanobis" in api
    card = (site / "model-card" / "index.html").read_text()
    assert "efficientnet_lite0" in card and "Out-of-distribution guard" in card
    assert (site / "figures" / "web-page.png").is_file() and (
        site / "monitoring" / "index.html"
    ).is_file()
