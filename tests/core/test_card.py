"""The model card: made from model.json alone, saying what a user must know."""

import json
from pathlib import Path

from conftest import TinyRun
from pneumonia.core.bundle import read_meta
from pneumonia.core.card import NO_REAL_FILES, model_card
from pneumonia.core.preprocess import Render


def test_the_card_carries_the_bundles_own_numbers(tiny_run: TinyRun) -> None:
    _, meta = read_meta(tiny_run.bundle)
    card = model_card(meta)
    assert card.startswith(f"# Model card: {meta.architecture.name}")
    assert f"Threshold: {meta.threshold.value:.4g}" in card
    assert f"| roc_auc | {meta.validation['roc_auc']:.4f} |" in card
    assert "Not a medical device" in card and NO_REAL_FILES in card
    assert (tiny_run.bundle / "MODEL_CARD.md").read_text() == card  # written beside it
    assert meta.guard is not None and meta.guard.layout is not None
    assert "a layout check on the pixels" in card
    no_layout = meta.model_copy(update={"guard": meta.guard.model_copy(update={"layout": None})})
    assert "layout check" not in model_card(no_layout)


def test_a_render_step_a_recontract_and_real_files_appear(tiny_run: TinyRun) -> None:
    _, meta = read_meta(tiny_run.bundle)
    contract = meta.preprocessing.model_copy(update={"render": Render(side=224, quality=75)})
    real = {"pairs": 3, "patients": 2, "positives": 2, "negatives": 1, "which": "held out",
            "command": "pneumonia pairs X", "renderings": {"original": {
                "mean_dp": 0.01, "p95_dp": 0.02, "max_dp": 0.03, "flips": 0, "flagged": 1,
                "flagged_copy": 0, "rendering": {"sensitivity": 1.0, "specificity": 0.5},
                "copy": {"sensitivity": 1.0, "specificity": 0.5}}}}  # fmt: skip
    training = {**meta.training, "recontracted": {
        "command": "pneumonia recontract A --render=224:75",
        "previous_preprocessing": meta.preprocessing.model_dump()}}  # fmt: skip
    validation = {**meta.validation, "real_files": real}
    update = {"preprocessing": contract, "training": training, "validation": validation}
    changed = meta.model_copy(update=update)
    card = model_card(changed)
    assert "224x224, JPEG quality 75" in card and "pneumonia recontract A" in card
    assert "| original | 0.0100 | 0.030 | 0 | 1 (0) |" in card and NO_REAL_FILES not in card
    json.dumps(changed.model_dump(mode="json"))  # still a valid model.json
    assert not Path(changed.training["recontracted"]["command"]).exists()
