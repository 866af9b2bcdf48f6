"""The CLI as a user meets it: each command on synthetic data, and one clear line per bad input."""

import json
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from pneumonia.cli import app
from pneumonia.data.synthetic import make_dataset

runner = CliRunner()
PER = {"train": {"NORMAL": 12, "PNEUMONIA": 20}, "val": {"NORMAL": 1, "PNEUMONIA": 1}}


def invoke(*args: str) -> object:
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    make_dataset(tmp_path / "dl", "kaggle_nested", PER, size_range=(24, 48), modes=("L", "RGB"))
    return tmp_path / "dl"


def test_check_split_prepare_round_trip(tmp_path: Path, dataset: Path) -> None:
    report = tmp_path / "report"
    result = invoke("data", "check", dataset, "--out", report, "--workers", "1")
    assert result.exit_code == 0, result.output
    assert "PNEUMONIA" in result.output and "report.json" in result.output
    assert json.loads((report / "report.json").read_text())["totals"] == {
        "NORMAL": 13,
        "PNEUMONIA": 21,
    }
    assert (report / "config.yaml").is_file()
    again = invoke("data", "check", dataset, "--out", report)
    assert again.exit_code == 1 and "--force" in again.output

    manifest = tmp_path / "m.csv"
    common = [
        f"data.manifest={manifest}",
        f"data.cache_dir={tmp_path / 'c'}",
        "data.val_fraction=0.25",
    ]
    result = invoke("data", "split", dataset, *common, "--workers", "1")
    assert result.exit_code == 0, result.output
    assert "in both 0" in result.output and manifest.is_file()
    resolved = yaml.safe_load(manifest.with_suffix(".config.yaml").read_text())
    assert resolved["data"]["val_fraction"] == 0.25
    assert "unchanged" in invoke("data", "split", dataset, *common, "--workers", "1").output
    clash = invoke("data", "split", dataset, *common, "data.seed=9", "--workers", "1")
    assert clash.exit_code == 1 and "--force" in clash.output

    result = invoke("data", "prepare", *common, "preprocess.image_size=32", "--workers", "1")
    assert result.exit_code == 0, result.output
    assert "built 34, reused 0, failed 0" in result.output
    result = invoke("data", "prepare", *common, "preprocess.image_size=32", "--workers", "1")
    assert "built 0, reused 34" in result.output


def test_keep_val_keeps_the_official_val(tmp_path: Path, dataset: Path) -> None:
    out = tmp_path / "m.csv"
    result = invoke("data", "split", dataset, "--keep-val", "--out", out, "--workers", "1")
    assert result.exit_code == 0, result.output
    lines = out.read_text().splitlines()
    assert sum(",val," in line for line in lines) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["data", "check", "{tmp}/nowhere"], "no such file or folder"),
        (["data", "split", "{tmp}"], "unrecognised dataset layout"),
        (["data", "split", "{data}", "data.seed=x"], "data.seed"),
        (["data", "split", "{data}", "data.colour=1"], "data.colour: unknown key"),
        (["data", "prepare", "--manifest", "{tmp}/none.csv"], "manifest not found"),
        (["data", "split", "{data}", "--config", "{tmp}/none.yaml"], "config file not found"),
    ],
)
def test_bad_input_is_one_clear_line(
    tmp_path: Path, dataset: Path, args: list[str], message: str
) -> None:
    (tmp_path / "empty").mkdir()
    filled = [a.format(tmp=tmp_path / "empty", data=dataset) for a in args]
    result = runner.invoke(app, filled)
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output
    assert result.output.count("error:") == 1


def test_check_exits_nonzero_on_an_empty_class(tmp_path: Path, dataset: Path) -> None:
    for f in (dataset / "chest_xray" / "chest_xray" / "val" / "NORMAL").iterdir():
        f.unlink()
    result = invoke("data", "check", dataset, "--out", tmp_path / "r", "--workers", "1")
    assert result.exit_code == 1
    assert "label folder NORMAL has no images" in result.output


def test_unreadable_image_is_named_and_the_rest_checked(tmp_path: Path, dataset: Path) -> None:
    bad = dataset / "chest_xray" / "chest_xray" / "train" / "NORMAL" / "IM-0999-0001.jpeg"
    bad.write_text("hello")
    result = invoke("data", "check", dataset, "--out", tmp_path / "r", "--workers", "1")
    assert result.exit_code == 0
    assert "IM-0999-0001.jpeg" in result.output and "not an image" in result.output
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["images"] == 34


def test_version_and_help() -> None:
    assert "pneumonia" in invoke("--version").output
    assert "check" in invoke("data", "--help").output


def _command_paths(group: object, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command and group under `group` (typer's own click), as the words that reach it."""
    paths = [prefix]
    for name, command in getattr(group, "commands", {}).items():
        if hasattr(command, "commands"):
            paths += _command_paths(command, (*prefix, name))
        else:
            paths.append((*prefix, name))
    return paths


def test_every_help_page_renders() -> None:
    """A docstring's square brackets are rich markup: one stray tag breaks `--help` for all."""
    paths = _command_paths(typer.main.get_command(app))
    assert ("predict",) in paths and ("data", "check") in paths
    for words in paths:
        result = runner.invoke(app, [*words, "--help"])
        assert result.exit_code == 0, (words, result.output, result.exception)
        assert "Usage" in result.output, words
