"""The code passes its own pre-commit hooks (ruff, ruff format, mypy, end of files, trailing
whitespace, large files, merge conflicts, notebooks without outputs), run as a developer runs
them: `pre-commit run --all-files`, here on a copy of the working tree so that a fixing hook
never edits the checkout."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
HOOKS = {
    "ruff-check",
    "ruff-format",
    "mypy",
    "import-linter",
    "end-of-file-fixer",
    "trailing-whitespace",
    "check-added-large-files",
    "check-merge-conflict",
    "strip-notebook-outputs",
}


def copy_of_the_tree(target: Path) -> Path:
    """The files git tracks or would track (as they are now), in a new repository."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    (target / ".venv").symlink_to(sys.prefix)  # the project environment
    for command in (["git", "init", "-q"], ["git", "add", "-A"]):
        subprocess.run(command, cwd=target, check=True, capture_output=True)
    return target


def test_every_hook_is_local_and_named() -> None:
    config = yaml.safe_load((REPO / ".pre-commit-config.yaml").read_text())
    assert [r["repo"] for r in config["repos"]] == ["local"]  # nothing to download
    hooks = config["repos"][0]["hooks"]
    assert {h["id"] for h in hooks} == HOOKS
    assert all(h["language"] == "system" and h["entry"].startswith(".venv/bin/") for h in hooks)


@pytest.mark.slow
def test_pre_commit_passes_on_all_files(tmp_path: Path) -> None:
    tree = copy_of_the_tree(tmp_path / "tree")
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "cache"), "SKIP": ""}
    result = subprocess.run(
        [str(Path(sys.prefix) / "bin" / "pre-commit"), "run", "--all-files", "--color=never"],
        cwd=tree, capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    for name in (
        "ruff check",
        "ruff format",
        "mypy",
        "layers (import-linter)",
        "notebooks without outputs",
    ):
        assert f"{name}." in result.stdout and "Passed" in result.stdout
