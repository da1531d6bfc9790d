#!/usr/bin/env bash
# The test command (README, .ci/run): installs the dev host and a headless Chromium if missing,
# checks the code with ruff, then runs the whole pytest suite against the real ComfyUI.
# pytest's exit 5 (no tests ran) is a failure.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
bash "$ROOT/devhost/install.sh"
source "$ROOT/devhost/python_env.sh"
if ! command -v chromium >/dev/null; then
  echo "test: installing chromium (Debian) for the browser test"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || { echo "test: could not install chromium (needs root and Debian's packages)" >&2; exit 1; }
fi
cd "$ROOT"
"$ROOT/.devhost/venv/bin/ruff" check .
set +e
"$ROOT/.devhost/venv/bin/python" -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "test: pytest collected no tests; that is a failure" >&2
  exit 1
fi
exit "$rc"
