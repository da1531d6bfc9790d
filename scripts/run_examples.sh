#!/usr/bin/env bash
# The main job (README): every bundled workflow in example_workflows/, end to end through the real ComfyUI
# server on the tiny embedded models; prints the folder its outputs were copied to.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
bash "$ROOT/devhost/install.sh"
source "$ROOT/devhost/python_env.sh"
cd "$ROOT"
exec "$ROOT/.devhost/venv/bin/python" -m devhost.run_examples "$@"
