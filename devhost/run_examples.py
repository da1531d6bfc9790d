"""The main job: run every bundled workflow in `example_workflows/` through the real ComfyUI server.

Each workflow is the UI-format file a user would open; it is converted to an API prompt with the
server's own node definitions, its model names are pointed at the tiny embedded models, and its
sizes and step counts are shrunk so the whole set runs on a CPU in minutes. Everything the run
writes (images, loss curves, styles, embeddings, LoRAs) is copied into one folder, printed at the end.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import time
from pathlib import Path

from PIL import Image, ImageDraw

from . import fixtures
from .comfy_server import ComfyServer
from .paths import BASE_DIR, REPO_ROOT, TEMPLATES
from .ui_workflow import ui_to_api

# What the tiny models stand in for, by loader input name.
MODEL_SUBSTITUTES = {
    "ckpt_name": fixtures.TINY_SD15.filename,
    "clip_name": fixtures.TINY_CLIP_VISION.filename,
}
# Per node type: inputs set so a CPU runs each workflow in about a minute (64 px, few steps).
TINY_RUN_OVERRIDES = {
    "EmptyLatentImage": {"width": 64, "height": 64},
    "ImageScale": {"width": 64, "height": 64},
    "KSampler": {"steps": 6},
    "BasicScheduler": {"steps": 6},
    "InST_TrainStyle": {"steps": 30, "resolution": 64},
    "InST_StyleTransfer": {"steps": 10},
    "StyleForge_Train": {"steps": 30, "resolution": 64},
    "StyleForge_TrainMulti": {"steps": 30, "resolution": 64},
    "StyleForge_Options": {"checkpoint_every": 15},
    "StylePersonalization_Validation": {"every": 10, "steps": 4},
}
TRAINERS = ("InST_TrainStyle", "StyleForge_Train", "StyleForge_TrainMulti")


def tiny_run(training_steps: int) -> dict:
    """TINY_RUN_OVERRIDES with every trainer's steps set to `training_steps` (the UI tests, the screenshots)."""
    return {**TINY_RUN_OVERRIDES, **{t: {**TINY_RUN_OVERRIDES[t], "steps": training_steps} for t in TRAINERS}}


GRID_TILE, GRID_LABEL = 128, 90  # validation grid: tile side (tiny-model images are upscaled), label column
# Model folders whose new files are results of a run (learned styles, embeddings, LoRAs).
RESULT_FOLDERS = ("output", "models/loras", "models/embeddings", "models/inst_styles")


def shrink_for_tiny_models(prompt: dict) -> list[str]:
    """Point loaders at the tiny models and shrink sizes and steps in place; returns what changed."""
    changes = []
    for node_id, node in prompt.items():
        inputs = node["inputs"]
        wanted = {k: v for k, v in MODEL_SUBSTITUTES.items() if isinstance(inputs.get(k), str)}
        wanted.update(TINY_RUN_OVERRIDES.get(node["class_type"], {}))
        for name, value in wanted.items():
            if name in inputs and not isinstance(inputs[name], list) and inputs[name] != value:
                changes.append(f"{node_id}.{name}: {inputs[name]!r} -> {value!r}")
                inputs[name] = value
    return changes


def snapshot(folders=RESULT_FOLDERS) -> dict[Path, float]:
    files = {}
    for folder in folders:
        for path in (BASE_DIR / folder).rglob("*"):
            if path.is_file():
                files[path] = path.stat().st_mtime
    return files


def copy_new_files(before: dict[Path, float], dest: Path) -> list[Path]:
    copied = []
    for path, mtime in snapshot().items():
        if before.get(path) != mtime:
            target = dest / path.relative_to(BASE_DIR)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
            copied.append(target)
    return copied


def validation_grid(folder: Path) -> Path | None:
    """One picture of a run's validation images: a row per step, a column per prompt, labelled."""
    pattern = re.compile(r"_step(\d{6})_(\d+)\.png$")
    found = {tuple(int(g) for g in m.groups()): p for p in folder.rglob("*_step*.png") if (m := pattern.search(p.name))}
    if not found:
        return None
    steps, columns = sorted({s for s, _ in found}), max(k for _, k in found)
    with Image.open(next(iter(found.values()))) as first:
        tile = max(first.size[0], GRID_TILE)
    grid = Image.new("RGB", (GRID_LABEL + columns * tile, len(steps) * tile), "white")
    draw = ImageDraw.Draw(grid)
    for row, step in enumerate(steps):
        draw.text((4, row * tile + tile // 2), f"step {step}", fill="black")
        for (s, k), path in found.items():
            if s == step:
                with Image.open(path) as image:
                    grid.paste(image.convert("RGB").resize((tile, tile), Image.NEAREST),
                               (GRID_LABEL + (k - 1) * tile, row * tile))
    target = folder / "validation_grid.png"
    grid.save(target)
    return target


def run_workflow(server: ComfyServer, path: Path, object_info: dict, out_dir: Path) -> dict:
    prompt = ui_to_api(json.loads(path.read_text()), object_info)
    changes = shrink_for_tiny_models(prompt)
    before = snapshot()
    t0 = time.time()
    result = server.run(prompt, timeout=1800)
    files = copy_new_files(before, out_dir / path.stem)
    grid = validation_grid(out_dir / path.stem)
    files += [grid] if grid else []
    (out_dir / path.stem).mkdir(parents=True, exist_ok=True)
    (out_dir / path.stem / "api_prompt.json").write_text(json.dumps(prompt, indent=1))
    error = None
    if not result.ok and result.error:
        error = f"{result.error.get('node_type')}: {result.error.get('exception_message', '').strip()}"
    return {"workflow": path.name, "status": result.status, "seconds": round(time.time() - t0, 1),
            "files": len(files), "substituted": changes, "error": error}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "out" / time.strftime("examples-%Y%m%d-%H%M%S"))
    parser.add_argument("--only", help="run only the workflow whose file name contains this")
    args = parser.parse_args(argv)
    workflows = sorted(p for p in TEMPLATES.glob("*.json") if not args.only or args.only in p.name)
    if not workflows:
        print(f"run_examples: no workflows found in {TEMPLATES}", file=sys.stderr)
        return 1
    fixtures.install_all()
    args.out.mkdir(parents=True, exist_ok=True)
    server = ComfyServer(args.out / "server.log")
    summary = []
    try:
        server.start()
        object_info = server.get("/object_info")
        for path in workflows:
            row = run_workflow(server, path, object_info, args.out)
            summary.append(row)
            print(f"{row['workflow']:<44} {row['status']:<8} {row['seconds']:>7.1f} s  {row['files']} files"
                  + (f"  ERROR {row['error']}" if row["error"] else ""), flush=True)
    finally:
        server.stop()
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"outputs: {args.out}")
    return 0 if all(row["status"] == "success" for row in summary) else 1


if __name__ == "__main__":
    sys.exit(main())
