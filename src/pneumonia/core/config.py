"""Configuration: pydantic models, YAML files under `configs/`, and `key=value` overrides.

Resolution order: the models' defaults, then a YAML file, then command-line overrides.
Unknown keys anywhere are an error. `configs/default.yaml` spells out every default; a test
keeps it equal to the models.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from pneumonia.core.errors import ConfigError
from pneumonia.core.preprocess import Preprocessing


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AugmentConfig(_Strict):
    """X-ray-appropriate training augmentation (geometry and exposure, no mirror by default)."""

    aspect_min: float = Field(
        0.75, gt=0, le=1, description="narrowest width/height stretch before the letterbox"
    )
    aspect_max: float = Field(1.6, ge=1, description="widest width/height stretch")
    aspect_p: float = Field(0.5, ge=0, le=1, description="share of images that get stretched")
    aspect_mode: Literal["contract", "letterbox", "fill"] = Field(
        "contract",
        description="letterbox: squeeze one side onto black; fill: stretch one side and cut "
        "it to the frame; contract: letterbox for resize pad, fill for stretch and crop",
    )
    rotation_degrees: float = Field(8.0, ge=0, le=45)
    translate: float = Field(0.05, ge=0, le=0.5, description="max shift, fraction of the side")
    scale_min: float = Field(0.8, gt=0, description="< 1 zooms out onto a black border")
    scale_max: float = Field(1.4, gt=0, description="> 1 zooms in: a tighter field of view")
    gamma: float = Field(0.4, ge=0, le=1, description="gamma drawn in [1/(1+g), 1+g], log-uniform")
    brightness: float = Field(0.1, ge=0, le=1)
    contrast: float = Field(0.1, ge=0, le=1)
    hflip: bool = Field(False, description="mirror left-right; off: the heart is on one side")
    render_p: float = Field(
        0.0,
        ge=0,
        le=1,
        description="share of images rendered again (another resolution and filter, JPEG, "
        "blur or sharpening, fewer grey levels), as the originals and their exports differ "
        "from the JPEG copies",
    )
    render_scale_max: float = Field(3.0, ge=1, le=8, description="largest up-scaling rendered at")
    render_jpeg_min: int = Field(40, ge=1, le=95, description="lowest JPEG quality drawn")


class PairsConfig(_Strict):
    """Other renderings of training images (originals), paired by file name with their
    copies, for the consistency term (`train.consistency`)."""

    originals: Path | None = Field(
        None, description="a folder of files named as training images (NORMAL/, PNEUMONIA/)"
    )
    only: Path | None = Field(
        None, description="a text file of the file names to pair, one per line; null: all"
    )
    batch_size: int = Field(8, ge=1, description="pairs added to every training step")


class DataConfig(_Strict):
    """Where the data is, how validation is carved, how batches are drawn."""

    manifest: Path = Path("work/manifest.csv")
    cache_dir: Path = Path("work/cache")
    val_fraction: float = Field(0.1, gt=0, lt=0.5)
    seed: int = 42
    official_val: Literal["fold", "keep"] = Field(
        "fold", description="fold the dataset's own val/ into training, or keep it as validation"
    )
    balance: Literal["none", "class_weights", "sampler", "undersample"] = "class_weights"
    subtype: bool = Field(
        False,
        description="also train a second output, P(viral | pneumonia), on the subtypes the "
        "PNEUMONIA file names carry (bacteria/virus)",
    )
    batch_size: int = Field(32, ge=1)
    num_workers: Annotated[int, Field(ge=0)] | Literal["auto"] = Field(
        "auto", description="DataLoader processes; auto: none on <= 2 cores, else cores - 2 (max 8)"
    )

    def loader_workers(self) -> int:
        """`num_workers` as a number: on 2 cores worker processes slow training down (they
        take CPU from the network's threads: see docs/benchmarks.md), so auto is 0 there."""
        if self.num_workers != "auto":
            return self.num_workers
        from pneumonia.core.progress import default_workers

        cores = default_workers()
        return 0 if cores <= 2 else min(8, cores - 2)

    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    pairs: PairsConfig = Field(default_factory=PairsConfig)


class ModelConfig(_Strict):
    """Which registry model to build (`pneumonia.modeling.models.create_model`)."""

    name: str = Field("efficientnet_lite0", description="a name from `pneumonia models`")
    pretrained: bool = Field(True, description="start from ImageNet weights (local files only)")
    weights: Path | None = Field(None, description="pretrained weights file instead of the cache")


class TrainConfig(_Strict):
    """The Lightning training loop: optimiser, schedule, stages, stopping, hardware."""

    out_dir: Path = Field(Path("runs"), description="one folder per run is made here")
    run_name: str | None = Field(None, description="run folder name; default <model>-<time>")
    epochs: int = Field(8, ge=1)
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = Field(1e-3, gt=0, description="peak learning rate of the head")
    weight_decay: float = Field(1e-4, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD only")
    schedule: Literal["onecycle", "cosine", "constant"] = "onecycle"
    lr_find: bool = Field(False, description="run Lightning's LR finder and use its suggestion")
    freeze_epochs: int = Field(1, ge=0, description="stage 1: only the classifier head trains")
    backbone_lr_scale: float = Field(
        0.1, gt=0, le=1, description="stage 2: backbone LR = lr * this (unfrozen)"
    )
    frozen_stages: int = Field(
        0, ge=0, description="the first N stages (stem first) stay frozen through the whole run"
    )
    freeze_batchnorm: bool = Field(
        False,
        description="batch-norm statistics stay as loaded all along (fine-tuning a trained "
        "network: train-mode batches of augmented copies re-estimate them badly)",
    )
    progressive_sizes: list[Annotated[int, Field(ge=16)]] = Field(
        default_factory=list,
        description="side of each epoch's training batches (epoch 0 first), downsampled from "
        "preprocess.image_size; later epochs and all validation at image_size",
    )
    early_stopping_patience: int = Field(4, ge=1, description="epochs without val AUC gain")
    label_smoothing: float = Field(
        0.0, ge=0, lt=0.5, description="training targets 0/1 become eps/2 and 1-eps/2"
    )
    consistency: float = Field(
        0.0,
        ge=0,
        description="weight of mean((z_other - z_copy)^2) over data.pairs' batches, the "
        "copy's logit held fixed: another rendering of a film gets its copy's answer",
    )
    subtype_weight: float = Field(
        0.5,
        gt=0,
        description="weight of the subtype loss beside the screening loss "
        "(with data.subtype: true)",
    )
    weight_averaging: Literal["none", "ema"] = Field(
        "ema", description="ema: validate, checkpoint and ship an EMA of the weights"
    )
    ema_decay: float = Field(
        0.995, gt=0, lt=1, description="EMA decay per step, from the first unfrozen epoch on"
    )
    seed: int = 42
    precision: Literal["32-true", "bf16-mixed", "16-mixed"] = "32-true"
    accelerator: str = Field("auto", description="auto: a GPU when there is one, else CPU")
    devices: int | str = "auto"
    channels_last: bool = Field(True, description="NHWC memory layout, faster convolutions")
    limit_train_batches: int | float = Field(1.0, gt=0, description="batches or fraction")
    limit_val_batches: int | float = Field(1.0, gt=0, description="batches or fraction")
    progress: bool = Field(True, description="rich progress bars")
    profiler: Literal["none", "simple", "advanced"] = Field(
        "none", description="Lightning profiler; its report goes to <run>/fit-profile.txt"
    )
    export_onnx: bool = Field(
        True, description="write the bundle's verified model.onnx; the guard is fitted on it"
    )


class OperatingConfig(_Strict):
    """How the bundle's decision threshold is chosen, on validation data only."""

    rule: Literal["target_sensitivity", "youden", "cost", "fixed"] = Field(
        "target_sensitivity", description="see pneumonia.evaluation.operating"
    )
    target_sensitivity: float = Field(0.99, gt=0, le=1)
    cost_ratio: float = Field(10.0, gt=0, description="cost of a missed pneumonia / false alarm")
    fixed: float = Field(0.5, gt=0, lt=1, description="the threshold when rule is fixed")
    calibrate: bool = Field(True, description="fit temperature scaling on validation first")
    views: list[str] = Field(
        default_factory=list,
        description="shifts (pneumonia.data.shifts) whose validation views join the clean ones; "
        "checked against the suite where they are used (`shifts.check_views`)",
    )
    pool: Literal["pooled", "worst"] = Field(
        "pooled", description="pooled: one rule over all views; worst: the lowest per-view value"
    )
    smooth: bool = Field(
        True, description="target_sensitivity by the Harrell-Davis quantile, not one score"
    )


LeaveOut = Literal["operating", "training"]


class AuditConfig(_Strict):
    """Likely label errors found by `pneumonia data audit`, and where they are left out."""

    file: Path | None = Field(
        Path("work/audit/label_issues.csv"),
        description="the audit's label_issues.csv (`pneumonia data audit`); null: every label "
        "is used everywhere",
    )
    leave_out: list[LeaveOut] = Field(
        default_factory=lambda: list[LeaveOut](["operating"]),
        description="operating: the calibration and threshold fit; training: the training set",
    )


class GuardConfig(_Strict):
    """The out-of-distribution guard fitted after training (`pneumonia.inference.guard`)."""

    enabled: bool = Field(True, description="fit the guard and store it in the bundle")
    augmented_views: int = Field(
        3, ge=0, le=16, description="augmented copies of each training image, besides the clean one"
    )
    components: int = Field(0, ge=0, description="principal directions kept; 0: all features")
    rendered_views: bool = Field(
        True,
        description="every augmented view is also rendered again (another resolution, JPEG, "
        "blur or sharpening, fewer grey levels: data.augment.render_p 1), so that originals "
        "and their exports are not flagged for their file's texture",
    )
    max_flag_rate: float = Field(
        0.01, gt=0, lt=0.5, description="share of clean validation X-rays the threshold may flag"
    )
    layout: bool = Field(
        True,
        description="also check the pixels: a whole frontal X-ray the right way round, not its "
        "negative or a small piece of it (flags at most half of max_flag_rate of validation)",
    )


class TrackingConfig(_Strict):
    """MLflow experiment tracking of `train` and `evaluate` runs (pneumonia.core.tracking)."""

    enabled: bool = Field(True, description="log runs to MLflow; false: no tracking at all")
    uri: str | None = Field(
        None, description="tracking URI; default $MLFLOW_TRACKING_URI, else sqlite:///mlruns.db"
    )
    experiment: str = Field("pneumonia", min_length=1, description="MLflow experiment name")


class Config(_Strict):
    """The whole resolved configuration of a run."""

    data: DataConfig = Field(default_factory=DataConfig)
    preprocess: Preprocessing = Field(default_factory=Preprocessing)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    operating: OperatingConfig = Field(default_factory=OperatingConfig)
    audit: AuditConfig = Field(default_factory=AuditConfig)
    guard: GuardConfig = Field(default_factory=GuardConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)

    @model_validator(mode="after")
    def _sizes_fit(self) -> Config:
        side = self.preprocess.image_size
        if any(size > side for size in self.train.progressive_sizes):
            raise ValueError(
                f"train.progressive_sizes {self.train.progressive_sizes}: each side must be at "
                f"most preprocess.image_size ({side}); the batches are downsampled, not enlarged"
            )
        return self

    @model_validator(mode="after")
    def _pairs_used(self) -> Config:
        has_pairs = self.data.pairs.originals is not None
        if has_pairs != (self.train.consistency > 0):
            raise ValueError(
                "data.pairs.originals and train.consistency go together: set both (a folder "
                "of other renderings and a weight > 0) or neither"
            )
        return self


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """`["data.seed=3", "preprocess.resize=crop"]` -> nested dict; values parsed as YAML."""
    nested: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not of the form key=value")
        node = nested
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r} conflicts with an earlier one")
            node = child
        try:
            node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: value is not valid YAML ({exc})") from exc
    return nested


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections")
    return loaded


def _format_validation(exc: ValidationError, source: str) -> str:
    problems = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        msg = msg.removeprefix("Value error, ")
        problems.append(f"{where}: {msg}" if where else msg)
    return f"{source}: invalid configuration: " + "; ".join(problems)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Resolve defaults <- YAML file <- `key=value` overrides into a validated `Config`."""
    path = Path(path) if path else None
    raw: dict[str, Any] = _read_yaml(path) if path else {}
    raw = _merge(raw, parse_overrides(overrides or []))
    source = str(path) if path else "overrides"
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_validation(exc, source)) from exc


def dump_config(cfg: Config, path: Path) -> Path:
    """Write the resolved configuration as YAML (what a command actually ran with)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = cfg.model_dump(mode="json")
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path
