#!/usr/bin/env bash
# The main job on the embedded default: img2vid on the bundled photos, local backend, ./renders.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m flows.img2vid examples/img2vid_request.json
