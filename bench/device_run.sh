#!/usr/bin/env bash
# The GPU benchmark plan in one call on a bare GPU machine (the device tool): its Python has CUDA torch
# but no ComfyUI and no package index, and it is lent for 15 minutes in all, start included. So this
# script runs what the device kit carries (`python -m devhost.device_kit` writes .devkit/), builds the
# full-size fixtures there, and runs bench/gpu_bench.py case by case, most important first, each result
# appended to $OUT/gpu_bench.jsonl the moment it ends (its log to gpu_bench.log); no case starts after
# DEADLINE_S seconds.
#
#   run(command="bash bench/device_run.sh", carry=[".devkit"], timeout_s=600)
#   bash bench/device_run.sh --tiny --device cpu --max-steps 2   # the same plan as a smoke run anywhere
#
# Extra arguments go to every gpu_bench.py call.
set -uo pipefail
cd "$(dirname "$0")/.."
KIT=${KIT:-.devkit}
OUT=${OUT:-out/device-$(date +%Y%m%d-%H%M%S)}
PYTHON=${PYTHON:-python3}
DEADLINE_S=${DEADLINE_S:-450}
[ -d "$KIT/ComfyUI" ] || { echo "device_run: no kit in $KIT; run: python -m devhost.device_kit" >&2; exit 2; }
mkdir -p "$OUT"
"$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/kit-site \
  "$KIT"/wheels/*.whl || exit 1
# The dev host is a copy of the kit, so the fixtures built in it never travel back with the kit.
rm -rf /tmp/kit-devhost && cp -r "$KIT" /tmp/kit-devhost
export PYTHONPATH=/tmp/kit-site${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 DEVHOST=/tmp/kit-devhost
SECONDS=0
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  "$PYTHON" -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__)"; } | tee "$OUT/machine.txt"
# Most important first: InST and StyleForge 1000 steps at 512 px (the targets are for 1000 steps), SDXL
# and SD3.5 100 steps at 1024 px (their target is memory), then what an 8 GB card does, then fp16
# against fp32 (shorter runs: their difference, not their length, is the figure).
"$PYTHON" bench/gpu_bench.py --out "$OUT/gpu_bench.jsonl" --deadline-s "$DEADLINE_S" \
  --cases inst_sd15_512:1000 styleforge_sd15_512:1000 styleforge_sdxl_1024:100 styleforge_sd35_1024:100 "$@"
left() { echo $((DEADLINE_S - SECONDS > 1 ? DEADLINE_S - SECONDS : 1)); }  # 0 would mean no deadline
"$PYTHON" bench/gpu_bench.py --out "$OUT/gpu_bench.jsonl" --deadline-s "$(left)" --cap-gb 8 \
  --cases inst_sd15_512:50 styleforge_sd15_512:50 styleforge_sdxl_1024:10 "$@"
"$PYTHON" bench/gpu_bench.py --out "$OUT/gpu_bench.jsonl" --deadline-s "$(left)" \
  --cases fp16_vs_fp32:100 "$@"
echo "device_run: ${SECONDS}s, results in $OUT/gpu_bench.jsonl"
