"""The batch command: train every row of a manifest on Ray, on this machine or a running cluster.

    python ComfyUI/custom_nodes/inst_styleforge/batch/cli.py --manifest styles.csv \\
        --checkpoint v1-5-pruned-emaonly-fp16.safetensors --clip-vision clip-vit-large-patch14.safetensors \\
        --out ComfyUI/models --workers 2 --gpus-per-worker 1

Model names are looked up in ComfyUI's model folders as the loader nodes do (or give a path); paths in
the manifest are under ComfyUI's input folder. On a cluster, run it as the entrypoint of `ray job
submit` with `--address auto`, ComfyUI and the output folder on storage every node shares.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

import bootstrap  # beside this script (its folder is sys.path[0]); the package is not importable yet

PACKAGE_DIR = Path(__file__).resolve().parents[1]
USAGE_ERROR = 2  # exit status when a flag or the manifest is wrong (1: some rows failed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, required=True, help="CSV or JSON, one row per style or LoRA")
    parser.add_argument("--checkpoint", required=True, help="a file in models/checkpoints, or a path")
    parser.add_argument("--clip-vision", help="a file in models/clip_vision, or a path (InST rows need it)")
    parser.add_argument("--out", type=Path, required=True, help="gets inst_styles/, embeddings/, loras/, report.json")
    parser.add_argument("--comfyui", type=Path, default=PACKAGE_DIR.parents[1], help="the ComfyUI folder")
    parser.add_argument("--base-dir", type=Path, help="models/, input/, output/ when not in the ComfyUI folder")
    parser.add_argument("--workers", type=int, default=1, help="trainer actors (one per GPU)")
    parser.add_argument("--gpus-per-worker", type=float, default=0.0, help="1 on GPUs, 0 on CPUs")
    parser.add_argument("--cpus-per-worker", type=int, default=1, help="CPU cores per worker (its threads on the CPU)")
    parser.add_argument("--address", help="a running Ray cluster ('auto' inside ray job submit)")
    parser.add_argument("--cpu", action="store_true", help="train on the CPU")
    args = parser.parse_args(argv)

    base = str(args.base_dir.resolve()) if args.base_dir else None
    package = bootstrap.load_package(str(args.comfyui.resolve()), str(PACKAGE_DIR), base, args.cpu)
    host = importlib.import_module(f"{package.__name__}.host")  # its modules load on use: files only, here
    files = importlib.import_module(f"{package.__name__}.training_kit.files")
    manifest = importlib.import_module(f"{package.__name__}.batch.manifest")

    def model(folder: str, name: str | None, flag: str) -> str | None:
        if name is None:
            return None
        if Path(name).is_file():
            return str(Path(name).resolve())
        return str(files.model_file_path(folder, name, flag, "Give a file name listed there, or a path to the file."))

    try:  # what the user gave is checked before Ray starts
        jobs = manifest.read_manifest(args.manifest, host.files.input_directory())
        checkpoint = model("checkpoints", args.checkpoint, "--checkpoint")
        clip_vision = model("clip_vision", args.clip_vision, "--clip-vision")
    except OSError as error:
        print(f"batch: --manifest: cannot read {args.manifest} ({error.strerror}).", file=sys.stderr)
        return USAGE_ERROR
    except ValueError as error:  # a malformed JSON manifest, an unknown model (InputError)
        print(f"batch: {error}", file=sys.stderr)
        return USAGE_ERROR
    pool = importlib.import_module(f"{package.__name__}.batch.pool")  # Ray, torch and ComfyUI's model code
    setup = pool.Setup(str(args.comfyui.resolve()), str(PACKAGE_DIR), checkpoint, clip_vision, base, args.cpu)
    pool.connect(setup, args.address)
    trainers = pool.TrainerPool(setup, args.workers, args.gpus_per_worker, args.cpus_per_worker)
    try:
        reports = pool.run_batch(jobs, trainers, args.out.resolve())
    finally:
        trainers.close()
    print(json.dumps(reports, indent=1))
    print(f"report: {args.out / pool.REPORT}")
    return 0 if all(r["status"] != "failed" for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
