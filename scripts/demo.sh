#!/usr/bin/env bash
# The main job on the embedded default: img2vid on the bundled photos, local backend, ./renders.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Prefect's server tries to send telemetry; offline that is an ERROR line in every run.
export PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1
.venv/bin/python -m flows.img2vid examples/img2vid_request.json
