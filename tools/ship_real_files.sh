#!/usr/bin/env bash
# The shipped model of issue 34, from the one before it, in one command (5 min 21 s on a
# 2-core AMD EPYC):   bash tools/ship_real_files.sh [OUT]   (default runs/shipped-real-files)
#
# 1. the screening network as shipped before the subtype head (git history, commit 1d6b783^:
#    the same bytes the subtype bundle grafted its head onto);
# 2. `pneumonia recontract`: the same weights under the contract that renders every image as
#    the training copies were (stretch, 224 px, JPEG quality 75), then blurs it (sigma 1 px),
#    calibration, threshold, guard (rendered views, layout check) and int8 fitted or judged
#    again on the patient-grouped split;
# 3. `pneumonia subtype`: the subtype head fitted again on the features under that contract;
# 4. `pneumonia pairs --record`: the originals of training patients never trained on as
#    originals (half B), against their copies, kept in the card, and the borderline band
#    measured on them kept in model.json (`borderline`).
# RENDER=224:75 (SIDE:QUALITY[:BLUR]) puts the weights under C2's contract instead (C2 was shipped
# before C3L; with the layout check the guard now fits, that is the study's C2L; see
# configs/experiments/real_files/README.md).
# Needs the split and cache (`pneumonia data split ../shared/data/chest_xray && pneumonia
# data prepare`), the label audit (`pneumonia data audit`) and ../shared/data/originals.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/pneumonia ] && PATH="$PWD/.venv/bin:$PATH"   # the README's set-up, activated or not
command -v pneumonia >/dev/null || { echo "pneumonia not found: run the README's set-up first" >&2; exit 1; }
out=${1:-runs/shipped-real-files}
render=${RENDER:-224:75:1}    # the render step's SIDE:QUALITY[:BLUR] (RENDER=... to try another)
v1=$out-v1 canon=$out-canon   # the steps' bundles, kept beside it
mkdir -p "$(dirname "$out")"
mkdir "$v1"   # refuses to run over an earlier attempt: choose another OUT, or remove its folders
for f in $(git ls-tree --name-only 1d6b783^ src/pneumonia/assets/default/); do
  git show "1d6b783^:$f" > "$v1/$(basename "$f")"
done
pneumonia recontract "$v1" --data work/manifest.csv --out "$canon" --resize stretch --render "$render"
pneumonia subtype "$canon" --data work/manifest.csv --out "$out"
python3 benchmarks/quality/originals_manifest.py --force >/dev/null  # halves A and B
pneumonia pairs "$out" --originals ../shared/data/originals \
  --copies ../shared/data/chest_xray/train --only work/originals-half-B.txt \
  --out "$out-pairs" --record "training-split patients whose originals were never trained on (half B); their copies were"
echo "shipped candidate: $out (pairs report: $out-pairs)"
