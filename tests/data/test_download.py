from pathlib import Path

import pytest
from typer.testing import CliRunner

from pneumonia.cli import app
from pneumonia.core.errors import OfflineError, PneumoniaError
from pneumonia.data import download as dl


def test_offline_fails_at_once_with_instructions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dl, "is_online", lambda *a, **k: False)
    with pytest.raises(OfflineError, match="unzip it into") as info:
        dl.download(tmp_path / "d")
    assert "chest_xray/train/NORMAL" in str(info.value)
    result = CliRunner().invoke(app, ["data", "download", "--dest", str(tmp_path / "d")])
    assert result.exit_code == 1 and "no network connection" in result.output


def test_online_uses_kagglehub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import kagglehub

    calls = []

    def fake(handle: str, output_dir: str) -> str:
        calls.append((handle, output_dir))
        return output_dir

    monkeypatch.setattr(dl, "is_online", lambda *a, **k: True)
    monkeypatch.setattr(kagglehub, "dataset_download", fake)
    assert dl.download(tmp_path / "d") == tmp_path / "d"
    assert calls == [(dl.KAGGLE_DATASET, str(tmp_path / "d"))]

    def broken(handle: str, output_dir: str) -> str:
        raise RuntimeError("401 unauthorised")

    monkeypatch.setattr(kagglehub, "dataset_download", broken)
    with pytest.raises(PneumoniaError, match=r"401 unauthorised.*by hand"):
        dl.download(tmp_path / "e")


def test_is_online_false_for_a_closed_port() -> None:
    assert dl.is_online("127.0.0.1", 1, timeout=0.5) is False
