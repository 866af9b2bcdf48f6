#!/usr/bin/env bash
# Smoke test of the api image, run with podman (no Docker engine needed):
#   benchmarks/deploy/image_smoke.sh [IMAGE]        # default localhost/pneumonia-api
# Starts the image's own command with a host folder as its log volume, then checks: /health
# answers; one real X-ray (from ../shared, else a synthetic PNG) is predicted; a text file
# named .jpeg is refused with a 4xx that names it; the image's HEALTHCHECK command passes;
# after a clean stop the volume's SQLite log holds exactly the one good prediction. Prints
# the image's size. PODMAN overrides the command (default below: runc, cgroupfs, and
# ulimits under a container host's own, as this project's build machine needs).
set -euo pipefail
IMAGE=${1:-localhost/pneumonia-api}
PODMAN=${PODMAN:-podman --runtime runc --cgroup-manager=cgroupfs}
RUN_OPTS=${RUN_OPTS:---ulimit nofile=8192:8192 --ulimit nproc=8192:8192 --no-healthcheck}
PORT=${PORT:-18000}
here=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
name=pneumonia-smoke-$$
cleanup() { $PODMAN rm -f "$name" >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; $PODMAN logs "$name" 2>&1 | tail -20 >&2 || true; exit 1; }

mkdir "$work/logs" && chmod 777 "$work/logs"     # the image runs as user id 1000
xray=$(ls "$here"/../shared/data/chest_xray/train/NORMAL/*.jpeg 2>/dev/null | head -1 || true)
if [ -z "$xray" ]; then
  xray=$work/synthetic.png
  "$here/.venv/bin/python" -c "import sys; from PIL import Image; import numpy as np; \
from pneumonia.data.synthetic import synthetic_xray; \
Image.fromarray(synthetic_xray('NORMAL', 600, 500, np.random.default_rng(0))).save(sys.argv[1])" "$xray"
fi
printf 'not an X-ray\n' > "$work/notes.jpeg"

# shellcheck disable=SC2086
$PODMAN run -d --name "$name" $RUN_OPTS -p "127.0.0.1:$PORT:8000" -v "$work/logs:/app/logs" \
  "$IMAGE" >/dev/null
url=http://127.0.0.1:$PORT
for _ in $(seq 120); do curl -sf "$url/health" >/dev/null && break; sleep 0.5; done
health=$(curl -sf "$url/health") || fail "/health did not answer in 60 s"
echo "health: $health"
good=$(curl -s -w ' %{http_code}' -F "files=@$xray" "$url/predict")
[ "${good##* }" = 200 ] && grep -q '"probability"' <<<"$good" || fail "/predict: $good"
echo "predict $(basename "$xray"): ${good:0:240}"
bad=$(curl -s -w ' %{http_code}' -F "files=@$work/notes.jpeg" "$url/predict")
code=${bad##* }
[ "$code" -ge 400 ] && [ "$code" -lt 500 ] && grep -q notes.jpeg <<<"$bad" || fail "bad file: $bad"
echo "bad file: $bad"
check=$($PODMAN image inspect "$IMAGE" --format '{{json .HealthCheck.Test}}' | python3 -c \
  'import json, sys; print(json.load(sys.stdin)[1])')
$PODMAN exec "$name" sh -c "$check" || fail "the HEALTHCHECK command failed"
echo "healthcheck command: ok"
$PODMAN stop -t 30 "$name" >/dev/null            # SIGTERM: the log writes what is queued
rows=$(python3 -c 'import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute(
  "SELECT count(*) FROM predictions").fetchone()[0])' "$work/logs/predictions.sqlite")
[ "$rows" = 1 ] || fail "the log volume holds $rows rows, not 1"
echo "log volume: predictions.sqlite holds $rows row"
size=$($PODMAN image inspect "$IMAGE" --format '{{.Size}}')
echo "image $IMAGE: $((size / 1000000)) MB"
echo "smoke test passed"
