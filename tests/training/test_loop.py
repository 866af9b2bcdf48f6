"""The trainer's tables: Lightning's sparse logs made one row per epoch, read back."""

from pathlib import Path

from pneumonia.training.loop import EPOCH_COLUMNS, epoch_history, log_files, write_epoch_table


def test_the_epoch_table_has_a_row_per_epoch_and_reads_back(tmp_path: Path) -> None:
    run = tmp_path / "run"
    for part, text in (
        ("part0", "epoch,step,train_loss,val_auc\n0,5,0.7,\n0,5,,0.81\n"),
        ("part1", "epoch,step,train_loss,val_auc\n1,10,0.5,\n1,10,,0.9\n"),  # a resume
    ):
        (run / "logs" / part).mkdir(parents=True)
        (run / "logs" / part / "metrics.csv").write_text(text)
    logs = log_files(run)
    assert [p.parent.name for p in logs] == ["part0", "part1"]
    table = write_epoch_table(logs, tmp_path / "metrics.csv")
    header = table.read_text().splitlines()[0].split(",")
    assert header == ["epoch", *EPOCH_COLUMNS]  # no subtype column without the head
    rows = epoch_history(table)
    assert [r["epoch"] for r in rows] == [0.0, 1.0]
    assert rows[1]["val_auc"] == 0.9 and rows[0]["train_loss"] == 0.7 and rows[0]["lr"] is None
