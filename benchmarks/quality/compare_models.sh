#!/usr/bin/env bash
# The model comparison of docs/comparison.md: every configs/experiments/ recipe trained on the
# shared training split (patient-grouped validation), then compared and reported on validation.
# About an hour on a 2-core CPU. Run from the repository root with the venv active or
# PNEUMONIA=.venv/bin/pneumonia. The EfficientNet-Lite0 entry is the shipped default model,
# trained by the same recipe (configs/experiments/efficientnet_lite0.yaml equals the defaults).
set -euo pipefail
PNEUMONIA=${PNEUMONIA:-pneumonia}
DATA=${1:-../shared/data/chest_xray}

[ -f work/manifest.csv ] || $PNEUMONIA data split "$DATA"
$PNEUMONIA data prepare --config configs/experiments/cnn_small.yaml   # the 128-px cache
for model in cnn_small resnet18 vit_tiny cnn_deep densenet121; do
  $PNEUMONIA train --config "configs/experiments/$model.yaml" train.run_name="$model" \
    train.progress=false
done
$PNEUMONIA compare runs/cnn_small runs/cnn_deep runs/resnet18 runs/densenet121 \
  src/pneumonia/assets/default runs/vit_tiny \
  --data work/manifest.csv --split val --out reports/compare --force
$PNEUMONIA report src/pneumonia/assets/default --data work/manifest.csv --split val \
  --out reports/report-default-val --no-thumbnails --force
