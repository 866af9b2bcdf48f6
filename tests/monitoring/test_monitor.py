"""`monitor`: quiet on a log that looks like validation, loud on a drift injected on purpose.

Logs are made from the shipped bundle's own validation reference (resampled), so the
undrifted case is drawn from the reference distribution by construction.
"""

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from pneumonia.cli import app
from pneumonia.core.bundle import DEFAULT_BUNDLE, model_version, read_meta
from pneumonia.core.errors import PneumoniaError
from pneumonia.core.meta import SubtypeRecord
from pneumonia.monitoring.monitor import (
    _borderline_section,
    _subtype_section,
    monitor,
    parse_when,
)
from pneumonia.monitoring.predlog import PredictionLog, Record

START = datetime(2026, 11, 1, tzinfo=UTC)


def write_log(
    path: Any,
    n: int,
    seed: int,
    drift: bool = False,
    model: str | None = None,
    unsure: float = 0.0,
) -> Path:
    """A log drawn from the shipped bundle's reference; `drift` injects a new site's changes,
    `unsure` is the share of answers moved to P(PNEUMONIA) in [0.3, 0.45]. `path`: a SQLite
    file or a PostgreSQL URL."""
    _, meta = read_meta(DEFAULT_BUNDLE)
    ref, guard = meta.reference, meta.guard
    assert guard is not None
    rng = np.random.default_rng(seed)
    likely_sick = np.flatnonzero(np.array(ref["probability"]) > 0.5)
    rows = []
    for i in range(n):
        j = int(rng.integers(len(ref["probability"])))
        if drift and rng.random() < 0.9:  # a new site: sicker patients (label shift) ...
            j = int(rng.choice(likely_sick))
        prob, ood = ref["probability"][j], ref["ood_score"][j]
        if unsure and rng.random() < unsure:
            prob = float(rng.uniform(0.3, 0.45))
        k = int(rng.integers(len(ref["brightness"])))  # inputs: the training images' reference
        bright, contrast = ref["brightness"][k], ref["contrast"][k]
        if drift:  # ... brighter images, and some uploads that are no X-rays at all
            bright = min(1.0, bright + 0.15)
            if rng.random() < 0.3:
                ood = guard.threshold * 5
        when = (START + timedelta(minutes=37 * i)).isoformat(timespec="milliseconds")
        label = "PNEUMONIA" if prob >= meta.threshold.value else "NORMAL"
        rows.append(Record(when, f"{i:064x}", 1800, 1500, bright, contrast,
                           model or model_version(meta), "onnx", prob, label,
                           ood <= guard.threshold, ood, 20.0))  # fmt: skip
    log = PredictionLog(path)
    log.write(rows)
    log.close()
    return path


def test_an_undrifted_log_raises_no_alert(tmp_path: Path) -> None:
    result = monitor(write_log(tmp_path / "log.sqlite", 600, 0), None, tmp_path / "m")
    assert result["alerts"] == [], result["rules"]
    judged = {r["rule"] for r in result["rules"] if r["value"] is not None}
    assert {"ood_rate", "probability_psi", "brightness_psi", "prevalence_shift"} <= judged
    assert (
        result["volume"]["predictions"] == 600 and sum(result["volume"]["per_day"].values()) == 600
    )
    assert (
        abs(
            result["prior"]["estimated_prevalence"]
            - result["prior"]["validation_estimated_prevalence"]
        )
        < 0.05
    )
    html = (tmp_path / "m" / "monitor.html").read_text()
    assert "No alert" in html and html.count("data:image/png;base64,") == 2
    assert json.loads((tmp_path / "m" / "monitor.json").read_text())["alerts"] == []


def test_an_injected_drift_trips_the_rules(tmp_path: Path) -> None:
    result = monitor(write_log(tmp_path / "log.sqlite", 600, 1, drift=True), None, tmp_path / "m")
    tripped = {a["rule"] for a in result["alerts"]}
    assert {"ood_rate", "probability_psi", "brightness_psi", "prevalence_shift"} <= tripped
    assert result["guard"]["rate"] == pytest.approx(0.3, abs=0.06)
    assert (
        result["prior"]["estimated_prevalence"]
        > result["prior"]["validation_estimated_prevalence"] + 0.15
    )
    assert "ALERT" in (tmp_path / "m" / "monitor.html").read_text()


def test_the_window_and_the_model_are_respected(tmp_path: Path) -> None:
    path = write_log(tmp_path / "log.sqlite", 200, 2)  # 37 min apart: about 5 days
    result = monitor(path, None, tmp_path / "m", since="2026-11-02", until="2026-11-02T12:00")
    assert set(result["volume"]["per_day"]) == {"2026-11-02"}
    assert all(r["value"] is None for r in result["rules"] if r["rule"].endswith("_psi"))  # < 30
    other = write_log(tmp_path / "other.sqlite", 50, 3, model="cnn_small@0123456789ab")
    with pytest.raises(PneumoniaError, match=r"no predictions by efficientnet_lite0@.*cnn_small"):
        monitor(other, None, tmp_path / "m2")
    with pytest.raises(PneumoniaError, match="no predictions between"):
        monitor(path, None, tmp_path / "m3", since="2030-01-01")


def test_parse_when() -> None:
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    assert parse_when("7d", now) == "2026-11-16T12:00:00.000+00:00"
    assert parse_when("90m", now) == "2026-11-23T10:30:00.000+00:00"
    assert parse_when("2026-11-01") == "2026-11-01T00:00:00.000+00:00"
    assert parse_when(None) is None
    with pytest.raises(PneumoniaError, match="not a time"):
        parse_when("last tuesday")


def test_cli_exits_3_on_an_alert(tmp_path: Path) -> None:
    runner = CliRunner()
    quiet = write_log(tmp_path / "quiet.sqlite", 300, 4)
    loud = write_log(tmp_path / "loud.sqlite", 300, 5, drift=True)
    result = runner.invoke(app, ["monitor", str(quiet), "--out", str(tmp_path / "q")])
    assert result.exit_code == 0, result.output
    assert "probability_psi" in result.output and "monitor.html" in result.output
    result = runner.invoke(app, ["monitor", str(loud), "--out", str(tmp_path / "l")])
    assert result.exit_code == 3 and "ALERT" in result.output
    result = runner.invoke(
        app, ["monitor", str(tmp_path / "none.sqlite"), "--out", str(tmp_path / "n")]
    )
    assert result.exit_code == 1 and "no such prediction log" in result.output


def test_records_survive_replace() -> None:  # the log's rows are plain frozen dataclasses
    row = Record("t", "s", 1, 1, 0.1, 0.1, "m", "onnx", 0.5, "NORMAL", None, None, 1.0)
    assert replace(row, label="PNEUMONIA").label == "PNEUMONIA" and row.label == "NORMAL"


def test_a_sensitivity_drop_names_the_command_that_adapts_the_threshold(tmp_path: Path) -> None:
    import shutil

    bundle = tmp_path / "bundle"
    shutil.copytree(DEFAULT_BUNDLE, bundle)
    meta = json.loads((bundle / "model.json").read_text())
    meta["threshold"]["value"] = 0.5  # a threshold that many soft positives fall just under
    (bundle / "model.json").write_text(json.dumps(meta))
    path = write_log(tmp_path / "log.sqlite", 400, 6, unsure=0.4)
    result = CliRunner().invoke(
        app, ["monitor", str(path), "--bundle", str(bundle), "--out", str(tmp_path / "m")]
    )
    assert result.exit_code == 3, result.output
    assert "expected_sensitivity_drop" in result.output
    assert f"pneumonia threshold {bundle} --unlabelled" in result.output
    report = json.loads((tmp_path / "m" / "monitor.json").read_text())
    tripped = {a["rule"]: a for a in report["alerts"]}
    assert "--unlabelled" in tripped["expected_sensitivity_drop"]["note"]


def test_replicas_logs_are_read_together(tmp_path: Path) -> None:
    """Two replicas' SQLite files, merged, give the report one file of both would give."""
    a = write_log(tmp_path / "a.sqlite", 150, 7)
    b = write_log(tmp_path / "b.sqlite", 150, 8)
    result = CliRunner().invoke(app, ["monitor", str(a), str(b), "--out", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "m" / "monitor.json").read_text())
    assert report["volume"]["predictions"] == 300 and report["log"] == f"{a}, {b}"
    alone = monitor(a, None, tmp_path / "one")
    assert alone["volume"]["predictions"] == 150


def test_monitor_reads_a_postgresql_log(tmp_path: Path, postgres_url: str) -> None:
    write_log(postgres_url, 120, 9)  # the rows a service writes there
    result = CliRunner().invoke(app, ["monitor", postgres_url, "--out", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "m" / "monitor.json").read_text())["volume"]["predictions"] == 120


def test_a_shared_logs_password_never_reaches_a_message(tmp_path: Path, postgres_url: str) -> None:
    url = postgres_url.replace("pneumonia@", "pneumonia:hidden@", 1)  # trust: any password
    write_log(url, 40, 10, model="cnn_small@0123456789ab")
    with pytest.raises(PneumoniaError, match="no predictions by") as caught:
        monitor(url, None, tmp_path / "m")
    assert "hidden" not in str(caught.value) and "***" in str(caught.value)


def test_monitor_names_a_log_server_it_cannot_reach(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["monitor", "postgresql://u:pw@127.0.0.1:1/db", "--out", str(tmp_path / "m")]
    )
    assert result.exit_code == 1 and "127.0.0.1:1/db: cannot read the log" in result.output
    assert "pw" not in result.output and "Traceback" not in result.output


def test_the_subtype_answers_are_reported_when_logged(tmp_path: Path) -> None:
    plain = write_log(tmp_path / "plain.sqlite", 40, seed=3)
    assert monitor(plain, None, tmp_path / "plain")["subtype"] == {"active": False}
    rows, version = [], model_version(read_meta(DEFAULT_BUNDLE)[1])
    for i, viral in enumerate([True, False, False, True, False]):
        when = (START + timedelta(minutes=i)).isoformat(timespec="milliseconds")
        rows.append(Record(when, f"{i:064x}", 900, 800, 0.5, 0.2, version, "onnx", 0.9,
                           "PNEUMONIA", True, 1.0, 20.0, "viral" if viral else "bacterial",
                           0.8 if viral else 0.2))  # fmt: skip
    rows.append(replace(rows[0], time=rows[-1].time[:-1] + "9", label="NORMAL", subtype=None))
    log = PredictionLog(tmp_path / "sub.sqlite")
    log.write(rows)
    log.close()
    result = monitor(tmp_path / "sub.sqlite", None, tmp_path / "sub")
    found = result["subtype"]
    assert {k: found[k] for k in ("active", "answered", "viral", "viral_share")} == {
        "active": True, "answered": 5, "viral": 2, "viral_share": 0.4}  # fmt: skip
    shipped = read_meta(DEFAULT_BUNDLE)[1].subtype  # the shipped head's validation answers
    assert shipped is not None
    columns = np.asarray(shipped.validation["three_class"]["matrix"]).sum(axis=0)
    assert found["validation_viral_share"] == pytest.approx(columns[2] / columns[1:].sum())
    assert "2 of them viral" in (tmp_path / "sub" / "monitor.html").read_text()
    _, meta = read_meta(DEFAULT_BUNDLE)  # as if it had the head: its validation answers
    matrix = [[1, 0, 0], [0, 3, 1], [0, 1, 2]]  # rows truth; columns NORMAL, bacterial, viral
    headed = meta.model_copy(
        update={"subtype": SubtypeRecord(validation={"three_class": {"matrix": matrix}})}
    )
    assert _subtype_section(rows, headed)["validation_viral_share"] == pytest.approx(3 / 7)


def test_the_borderline_answers_are_counted_in_the_shipped_band(tmp_path: Path) -> None:
    _, meta = read_meta(DEFAULT_BUNDLE)
    assert meta.borderline is not None  # the shipped bundle records its band
    low, high = meta.borderline.limits(meta.threshold.value)
    probabilities = [low, (low + high) / 2, high - 1e-6, high, low / 2, 0.9]  # 3 inside
    version, rows = model_version(meta), []
    for i, p in enumerate([*probabilities, (low + high) / 2]):
        when = (START + timedelta(minutes=i)).isoformat(timespec="milliseconds")
        flagged = i == len(probabilities)  # the last: flagged by the guard, not counted
        rows.append(Record(when, f"{i:064x}", 900, 800, 0.5, 0.2, version, "onnx", p,
                           "PNEUMONIA" if p >= meta.threshold.value else "NORMAL",
                           not flagged, 9.0 if flagged else 1.0, 20.0))  # fmt: skip
    log = PredictionLog(tmp_path / "b.sqlite")
    log.write(rows)
    log.close()
    found = monitor(tmp_path / "b.sqlite", None, tmp_path / "b")["borderline"]
    assert (found["answered"], found["borderline"]) == (6, 3)
    assert found["share"] == pytest.approx(0.5)
    assert found["validation_share"] == meta.borderline.validation_share
    assert "3 of 6 answers (50.0%) lie in the band" in (tmp_path / "b" / "monitor.html").read_text()
    unbanded = meta.model_copy(update={"borderline": None})
    assert _borderline_section(np.array(probabilities), unbanded) == {"active": False}
