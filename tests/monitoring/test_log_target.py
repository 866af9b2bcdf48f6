"""Where a prediction log lives: its URL, its password from a secret file, its name without it."""

from pathlib import Path

import pytest

from pneumonia.core.errors import PneumoniaError
from pneumonia.monitoring.log_target import PASSWORD_FILE_ENV, describe, log_url


def test_what_is_not_a_log_location(tmp_path: Path) -> None:
    with pytest.raises(PneumoniaError, match="SQLite file path or a postgresql://"):
        log_url("mysql://user@host/db")
    assert log_url(tmp_path / "a.sqlite").database == str(tmp_path / "a.sqlite")
    assert log_url("postgres://u@h/db").drivername == "postgresql+psycopg"
    assert log_url(f"sqlite:///{tmp_path}/b.sqlite").database == f"{tmp_path}/b.sqlite"
    assert not (Path.cwd() / "postgresql:").exists()


def test_the_password_comes_from_a_secret_file_and_never_shows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "db_password"
    secret.write_text("S3cretPW\n")
    monkeypatch.setenv(PASSWORD_FILE_ENV, str(secret))
    url = log_url("postgresql://alice@db:5432/predictions")
    assert url.password == "S3cretPW" and "S3cretPW" not in describe(url)
    given = log_url("postgresql://alice:inline@db/predictions")  # a password given wins
    assert given.password == "inline" and "inline" not in describe(given)
    query = log_url("postgresql://alice@host:1/db?password=S3cretPW")
    assert "S3cretPW" not in describe(query) and "alice@host:1/db" in describe(query)
    assert describe(log_url(tmp_path / "a.sqlite")) == str(tmp_path / "a.sqlite")
    monkeypatch.setenv(PASSWORD_FILE_ENV, str(tmp_path / "missing"))
    with pytest.raises(PneumoniaError, match="cannot read the log's password file"):
        log_url("postgresql://alice@db/predictions")
