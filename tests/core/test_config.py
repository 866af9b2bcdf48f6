from pathlib import Path

import pytest
import yaml

from pneumonia.core.config import Config, dump_config, load_config, parse_overrides
from pneumonia.core.errors import ConfigError

DEFAULT = Path(__file__).resolve().parents[2] / "configs" / "default.yaml"


def test_default_yaml_matches_code_defaults() -> None:
    assert load_config(DEFAULT) == Config()
    written = yaml.safe_load(DEFAULT.read_text())
    assert written == Config().model_dump(mode="json"), "default.yaml must spell out every key"


def test_overrides_are_typed_and_nested() -> None:
    cfg = load_config(DEFAULT, ["data.seed=7", "preprocess.resize=crop", "data.augment.hflip=true"])
    assert cfg.data.seed == 7
    assert cfg.preprocess.resize == "crop"
    assert cfg.data.augment.hflip is True
    assert parse_overrides(["a.b=1", "a.c=x"]) == {"a": {"b": 1, "c": "x"}}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.sede=7", "data.sede: unknown key"),
        ("nonsense=1", "nonsense: unknown key"),
        ("data.val_fraction=0.9", "data.val_fraction"),
        ("preprocess.resize=squash", "preprocess.resize"),
        ("no_equals_sign", "not of the form key=value"),
    ],
)
def test_bad_overrides_are_clear_errors(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_config(None, [override])


def test_unknown_key_in_file_is_an_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  batch_sise: 4\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*data\.batch_sise: unknown key"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_dump_round_trips(tmp_path: Path) -> None:
    cfg = load_config(None, ["data.batch_size=3", "preprocess.image_size=64"])
    path = dump_config(cfg, tmp_path / "resolved.yaml")
    assert yaml.safe_load(path.read_text())["data"]["batch_size"] == 3
    assert load_config(path) == cfg
