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
import os
import sys
from pathlib import Path

import bootstrap  # beside this script (its folder is sys.path[0]); the package is not importable yet
import manifest as columns  # the manifest's columns, for --help (standard library only)

PACKAGE_DIR = Path(__file__).resolve().parents[1]
# ComfyUI/custom_nodes/<package>/batch/cli.py as the user ran it: a package linked into custom_nodes
# resolves elsewhere, so the default ComfyUI folder is read from the path as given.
COMFYUI_AS_RUN = Path(os.path.abspath(__file__)).parents[3]
USAGE_ERROR = 2  # exit status when a flag or the manifest is wrong (1: some rows failed)
INTERRUPTED = 130  # Ctrl-C, as a shell reports it (128 + SIGINT)


EPILOG = """\
manifest: CSV (UTF-8, a spreadsheet's BOM is fine) or JSON (a list of objects), one row per job:
  kind        inst (a painting -> a style and its embedding) or styleforge (image folders -> a LoRA)
  name        the output file name: inst_styles/NAME, embeddings/NAME or loras/NAME .safetensors
  painting    inst: an image under ComfyUI's input folder
  style_images, aux, backgrounds
              styleforge: folders under ComfyUI's input folder (backgrounds makes it Multi-StyleForge)
  settings, optional (empty: the trainer's defaults, as on the nodes)
              inst: {inst}
              styleforge: {styleforge}

example:
  python ComfyUI/custom_nodes/inst_styleforge/batch/cli.py --manifest styles.csv \\
      --checkpoint v1-5-pruned-emaonly-fp16.safetensors --clip-vision clip-vit-large-patch14.safetensors \\
      --out ComfyUI/models --workers 2 --gpus-per-worker 1

exit status: 0 every row done or skipped, 1 a row failed (see report.json), 2 a flag or the manifest is
wrong (nothing trained), 130 interrupted (Ctrl-C; the report lists what finished, rerun to go on)
"""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """--help shows each flag's default (where it has one) and keeps the epilog's layout."""

    def _get_help_string(self, action: argparse.Action) -> str:
        shown = action.default not in (None, False, argparse.SUPPRESS) and "default" not in action.help
        return f"{action.help} (default: %(default)s)" if shown else action.help


def arguments(argv: list[str] | None) -> argparse.Namespace:
    epilog = EPILOG.format(inst=", ".join(columns.INST_SETTINGS), styleforge=", ".join(columns.STYLEFORGE_SETTINGS))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=epilog, formatter_class=HelpFormatter)
    parser.add_argument("--manifest", type=Path, required=True, help="CSV or JSON, one row per style or LoRA")
    parser.add_argument("--checkpoint", required=True, help="a file in models/checkpoints, or a path")
    parser.add_argument("--clip-vision", help="a file in models/clip_vision, or a path (InST rows need it)")
    parser.add_argument("--out", type=Path, required=True, help="gets inst_styles/, embeddings/, loras/, report.json")
    parser.add_argument("--comfyui", type=Path, default=COMFYUI_AS_RUN,
                        help="the ComfyUI folder (default: the one whose custom_nodes holds this package)")
    parser.add_argument("--base-dir", type=Path,
                        help="the folder with models/, input/ and output/ when they are not in the ComfyUI folder "
                             "(ComfyUI's own --base-directory)")
    parser.add_argument("--workers", type=int, default=1, help="trainer actors (one per GPU)")
    parser.add_argument("--gpus-per-worker", type=float, default=0.0, help="1 on GPUs, 0 on CPUs")
    parser.add_argument("--cpus-per-worker", type=int, default=1, help="CPU cores per worker (its threads on the CPU)")
    parser.add_argument("--address", help="a running Ray cluster ('auto' inside ray job submit); without it Ray "
                                          "starts on this machine, on 127.0.0.1 only")
    parser.add_argument("--cpu", action="store_true", help="train on the CPU")
    return parser.parse_args(argv)


def flag_problems(args: argparse.Namespace) -> list[str]:
    """What is wrong with the flags on their own, before anything loads."""
    problems = []
    if not (args.comfyui / "comfy" / "model_management.py").is_file():
        problems.append(f"--comfyui: {args.comfyui} is not a ComfyUI folder (it has no comfy/model_management.py). "
                        "Pass --comfyui with the folder that holds ComfyUI's main.py.")
    if args.workers < 1:
        problems.append(f"--workers: is {args.workers}. Use 1 or more.")
    if args.cpus_per_worker < 1:
        problems.append(f"--cpus-per-worker: is {args.cpus_per_worker}. Use 1 or more.")
    if args.gpus_per_worker < 0 or (args.cpu and args.gpus_per_worker > 0):
        problems.append(f"--gpus-per-worker: is {args.gpus_per_worker:g}"
                        + (" with --cpu. Leave it at 0 to train on the CPU, or drop --cpu." if args.cpu
                           else ". Use 0 (CPU) or more."))
    if args.out.exists() and not args.out.is_dir():
        problems.append(f"--out: {args.out} is a file. Name a folder (it is created if missing).")
    return problems


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    if problems := flag_problems(args):
        print("\n".join(f"batch: {problem}" for problem in problems), file=sys.stderr)
        return USAGE_ERROR
    base = str(args.base_dir.resolve()) if args.base_dir else None
    package = bootstrap.load_package(str(args.comfyui.resolve()), str(PACKAGE_DIR), base, args.cpu)
    host = importlib.import_module(f"{package.__name__}.host")
    files = importlib.import_module(f"{package.__name__}.training_kit.files")
    manifest = importlib.import_module(f"{package.__name__}.batch.manifest")
    jobs = importlib.import_module(f"{package.__name__}.batch.jobs")  # torch and the trainers' checks

    def model(folder: str, name: str | None, flag: str) -> str | None:
        if name is None:
            return None
        if Path(name).is_file():
            return str(Path(name).resolve())
        return str(files.model_file_path(folder, name, flag, "Give a file name listed there, or a path to the file."))

    try:  # what the user gave is checked before Ray starts, every row as its node would check it
        checkpoint = model("checkpoints", args.checkpoint, "--checkpoint")
        clip_vision = model("clip_vision", args.clip_vision, "--clip-vision")
        todo = manifest.read_manifest(args.manifest, host.files.input_directory(), jobs.check_job)
        if clip_vision is None and any(job.kind == "inst" for job in todo):
            raise ValueError("--clip-vision: the manifest has InST rows, which need a CLIP vision model. "
                             "Pass --clip-vision with a ViT-L/14 file (e.g. clip-vit-large-patch14.safetensors).")
    except OSError as error:
        print(f"batch: --manifest: cannot read {args.manifest} ({error.strerror}).", file=sys.stderr)
        return USAGE_ERROR
    except ValueError as error:  # the manifest (every problem in it), an unknown model (InputError)
        print(f"batch: {error}", file=sys.stderr)
        return USAGE_ERROR
    if args.address is None:
        bootstrap.keep_ray_on_loopback()
    pool = importlib.import_module(f"{package.__name__}.batch.pool")  # Ray
    out = args.out.resolve()
    try:
        lock = pool.lock_output(out)
    except pool.BatchError as error:
        print(f"batch: {error}", file=sys.stderr)
        return USAGE_ERROR
    setup = pool.Setup(str(args.comfyui.resolve()), str(PACKAGE_DIR), checkpoint, clip_vision, base, args.cpu)
    pool.connect(setup, args.address)
    trainers = None
    try:
        pool.require_resources(args.workers, args.cpus_per_worker, args.gpus_per_worker)
        trainers = pool.TrainerPool(setup, args.workers, args.gpus_per_worker, args.cpus_per_worker)
        reports = pool.run_batch(todo, trainers, out)
    except pool.BatchError as error:
        print(f"batch: {error}", file=sys.stderr)
        return USAGE_ERROR
    except pool.Interrupted as interrupted:
        print(f"batch: interrupted; {interrupted}", file=sys.stderr)
        print(f"report: {out / pool.REPORT}")
        return INTERRUPTED
    except KeyboardInterrupt:
        print("batch: interrupted before any job started; nothing was trained.", file=sys.stderr)
        return INTERRUPTED
    finally:
        if trainers is not None:
            trainers.close()
        pool.disconnect()
        lock.close()
    print(json.dumps(reports, indent=1))
    print(f"report: {out / pool.REPORT}")
    return 0 if all(r["status"] != "failed" for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
