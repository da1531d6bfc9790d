"""The trainers at real size on a CUDA GPU: wall time, peak VRAM, and what an 8 GB card can do.

    .devhost/venv/bin/python bench/gpu_bench.py                  # every case, 1000 steps, on cuda
    .devhost/venv/bin/python bench/gpu_bench.py --cap-gb 8       # the same under an 8 GB VRAM cap
    .devhost/venv/bin/python bench/gpu_bench.py --cases styleforge_sdxl_1024:100 fp16_vs_fp32:200
    .devhost/venv/bin/python bench/gpu_bench.py --tiny --device cpu --steps 2   # a smoke run anywhere

It needs a Python whose torch has CUDA: a dev host's venv with a CUDA build of torch, or the device
kit (`bench/device_run.sh`, which runs the whole GPU plan on a bare GPU machine).
The models are the random-weight full-size fixtures (`devhost/fixtures.py`: SD1.5 with its 860M UNet,
SDXL with its 2.6B UNet, SD3.5 Medium with its 2.5B MMDiT), built once, those the chosen cases load;
`--tiny` swaps in the tiny ones at 64 px.

Cases, each in its own process (so each peak is its own):
- `inst_sd15_512`: InST, 512 px, batch 1, paper settings, the node's defaults (precision auto: the
  precision ComfyUI loads the UNet in, fp16 on most GPUs, loss-scaled; gradient checkpointing on).
- `styleforge_sd15_512`: StyleForge Single, 512 px, rank 8, text encoder frozen, the node's defaults.
- `styleforge_sdxl_1024`: StyleForge Single on SDXL at 1024 px.
- `styleforge_sd35_1024`: StyleForge Single on SD3.5 Medium (2.5B MMDiT, CLIP-L and CLIP-G, no T5) at
  1024 px: flow matching, adapters on the joint blocks. Its VAE is TAESD3 (the fixture's), so the one
  encode of the images costs less than with SD3's full VAE; training's own peak is the MMDiT's.
- `fp16_vs_fp32`: StyleForge on SD1.5 at 512 px trained twice, same seed: fp16 (loss-scaled) on the
  UNet as ComfyUI loads it, and fp32 on the UNet loaded in fp32; the relative difference of their
  evaluation losses (the fixed evaluation set of the training kit).
A case takes `--steps` steps unless it is named as `CASE:STEPS` (and at most `--max-steps`); `seconds`
is the whole training call (data preparation and evaluation included), `s_per_step` the median step
after the first two (ComfyUI's progress hook, updated once per step). Peak VRAM is
`torch.cuda.max_memory_allocated` over the training call (models loaded first, then reset). Under
`--cap-gb N` the card behaves as one of N GiB: torch may allocate at most N GiB
(`torch.cuda.set_per_process_memory_fraction`) and ComfyUI's model management keeps the rest reserved,
so it plans loads and offloads for that card; a case then either trains or stops with the trainer's
out-of-memory message, which is printed. Each result is a JSON line on stdout (and appended to
`--out`), written as soon as its case ends; cases that would start after `--deadline-s` are skipped.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(REPO_ROOT))

CASES = ("inst_sd15_512", "styleforge_sd15_512", "styleforge_sdxl_1024", "styleforge_sd35_1024", "fp16_vs_fp32")
IMAGES_PER_SET = 4
FP16_TOLERANCE = 0.02  # relative difference of the evaluation loss accepted between fp16 and fp32


def _fixtures(args) -> None:
    """Build (once) and link the models the chosen cases load; on the CPU, so the driver holds no GPU memory."""
    from devhost import fixtures

    sd15, sdxl, sd35 = ((fixtures.TINY_SD15, fixtures.TINY_SDXL, fixtures.TINY_SD35) if args.tiny else
                        (fixtures.FULL_SD15, fixtures.FULL_SDXL, fixtures.FULL_SD35))
    needed = {"inst_sd15_512": (sd15, fixtures.TINY_CLIP_VISION), "styleforge_sd15_512": (sd15,),
              "styleforge_sdxl_1024": (sdxl,), "styleforge_sd35_1024": (sd35,), "fp16_vs_fp32": (sd15,)}
    for fx in dict.fromkeys(fx for case, _ in args.cases for fx in needed[case]):
        fixtures.install(fx)


def _setup_case(args) -> None:
    from devhost.inprocess import import_comfy, import_package

    import_comfy(cpu=args.device == "cpu")
    import_package(cpu=args.device == "cpu")
    if args.cap_gb and args.device == "cuda":
        _cap_vram(args.cap_gb)


def _cap_vram(gib: float) -> None:
    """Make the card look like one of `gib` GiB to torch's allocator and to ComfyUI's planner."""
    import comfy.model_management
    import torch

    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, gib * 2**30 / total))
    comfy.model_management.EXTRA_RESERVED_VRAM += max(0, total - int(gib * 2**30))  # over its own reserve


def _load(name: str, dtype=None):
    """The checkpoint as CheckpointLoaderSimple loads it; `dtype` overrides the UNet's (ComfyUI's choice
    on a GPU is fp16 or bf16: a true fp32 reference has to ask for fp32)."""
    import comfy.sd
    import torch

    from devhost.paths import BASE_DIR

    with torch.inference_mode():
        model, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(
            str(BASE_DIR / "models" / "checkpoints" / f"{name}.safetensors"), output_vae=True, output_clip=True,
            model_options={"dtype": dtype} if dtype is not None else {})
    return model, clip, vae


def _images(seeds: range, size: int):
    import numpy as np
    import torch

    from devhost.example_inputs import painting

    return torch.cat([torch.from_numpy(np.asarray(painting(s).resize((size, size)), dtype=np.float32) / 255)[None]
                      for s in seeds])


def _reset_peak(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def _peak_gib(device: str) -> float | None:
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if device == "cuda" else None


def _timed(train, steps: int) -> dict:
    """Run `train(progress_bar)`: its wall time, and the median time of a step after the first two
    (from ComfyUI's progress hook, which the trainers update once per step)."""
    import statistics

    from common import StepClock
    from inst_styleforge import host

    clock = StepClock()
    t0 = time.perf_counter()
    result = train(host.progress.StepProgress(steps))
    step_times = clock.step_seconds(skip=2) or clock.step_seconds(skip=0)
    return {"seconds": time.perf_counter() - t0, "eval_after": result.eval_after,
            "s_per_step": round(statistics.median(step_times), 4) if step_times else None}


def _train_inst(args, size: int) -> dict:
    import comfy.clip_vision
    import torch
    from inst_styleforge.inst_core.training import InSTTrainingConfig, train_style

    from devhost.paths import BASE_DIR

    model, clip, vae = _load("tiny_sd15_taesd" if args.tiny else "full_sd15")
    with torch.inference_mode():
        vision = comfy.clip_vision.load(str(BASE_DIR / "models" / "clip_vision" / "tiny_clip_vision_vitl.safetensors"))
    paintings = [_images(range(1), size)]
    config = InSTTrainingConfig(steps=args.steps, resolution=size)
    _reset_peak(args.device)
    with torch.inference_mode():
        return _timed(lambda bar: train_style(model, clip, vae, vision, paintings, config, progress_bar=bar),
                      args.steps)


def _train_styleforge(args, checkpoint: str, size: int, precision: str = "auto", dtype=None) -> dict:
    import torch
    from inst_styleforge.styleforge_core import datasets, training

    model, clip, vae = _load(checkpoint, dtype)
    sets = training.TrainingSets(datasets.from_batch(_images(range(IMAGES_PER_SET), size)),
                                 datasets.from_batch(_images(range(100, 100 + IMAGES_PER_SET), size)))
    config = training.StyleForgeConfig(steps=args.steps, resolution=size, precision=precision)
    _reset_peak(args.device)
    with torch.inference_mode():
        return _timed(lambda bar: training.train_styleforge(model, clip, vae, sets, config, progress_bar=bar),
                      args.steps)


def measure(case: str, args) -> dict:
    from inst_styleforge.training_kit.errors import InputError

    def size(full: int) -> int:
        return 64 if args.tiny else full

    sd15, sdxl, sd35 = (("tiny_sd15_taesd", "tiny_sdxl_vega", "tiny_sd35_medium") if args.tiny else
                        ("full_sd15", "full_sdxl", "full_sd35_medium"))
    try:
        if case == "inst_sd15_512":
            out = _train_inst(args, size(512))
        elif case == "styleforge_sd15_512":
            out = _train_styleforge(args, sd15, size(512))
        elif case == "styleforge_sdxl_1024":
            out = _train_styleforge(args, sdxl, size(1024))
        elif case == "styleforge_sd35_1024":
            out = _train_styleforge(args, sd35, size(1024))
        else:
            import torch

            low_precision = "fp32" if args.device == "cpu" else "fp16"  # CPU: a smoke run only
            low = _train_styleforge(args, sd15, size(512), low_precision)
            full = _train_styleforge(args, sd15, size(512), "fp32", dtype=torch.float32)
            difference = abs(low["eval_after"] - full["eval_after"]) / full["eval_after"]
            out = {"seconds": low["seconds"] + full["seconds"], "s_per_step_fp16": low["s_per_step"],
                   "s_per_step_fp32": full["s_per_step"], "eval_fp16": low["eval_after"],
                   "eval_fp32": full["eval_after"], "relative_difference": difference,
                   "within_tolerance": difference <= FP16_TOLERANCE}
        return {"case": case, "status": "trained", "peak_vram_gib": _peak_gib(args.device), **out}
    except InputError as error:  # the trainers' own out-of-memory message (or another input error)
        return {"case": case, "status": "refused", "message": str(error), "peak_vram_gib": _peak_gib(args.device)}


def _case_and_steps(text: str) -> tuple[str, int | None]:
    case, _, steps = text.partition(":")
    if case not in CASES:
        raise argparse.ArgumentTypeError(f"unknown case '{case}' (one of {', '.join(CASES)})")
    if steps and int(steps) < 1:
        raise argparse.ArgumentTypeError(f"'{text}': steps must be at least 1")
    return case, int(steps) if steps else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", type=_case_and_steps, default=[(c, None) for c in CASES],
                        metavar="CASE[:STEPS]", help=f"cases to run, in order ({', '.join(CASES)})")
    parser.add_argument("--steps", type=int, default=1000, help="steps of a case named without its own")
    parser.add_argument("--max-steps", type=int, default=0, help="cap every case's steps (a smoke run)")
    parser.add_argument("--cap-gb", type=float, default=0.0, help="VRAM cap in GiB (0 = the whole card)")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--tiny", action="store_true", help="tiny fixtures at 64 px (a smoke run)")
    parser.add_argument("--out", type=Path, help="also append each result to this JSON-lines file (and each "
                        "case's log to the same name ending in .log)")
    parser.add_argument("--deadline-s", type=float, default=0.0, help="start no case after this many seconds")
    parser.add_argument("--measure", choices=CASES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    start = time.monotonic()
    if args.measure:
        _setup_case(args)
        print(json.dumps(measure(args.measure, args)))
        return
    _fixtures(args)
    print(json.dumps({"fixtures_ready_s": round(time.monotonic() - start, 1)}), flush=True)
    for case, steps in args.cases:
        steps = min(steps or args.steps, args.max_steps or sys.maxsize)
        if args.deadline_s and time.monotonic() - start > args.deadline_s:
            result = {"case": case, "status": "skipped", "reason": f"past --deadline-s {args.deadline_s:.0f}"}
        else:
            command = [sys.executable, __file__, "--measure", case, "--steps", str(steps), "--cap-gb",
                       str(args.cap_gb), "--device", args.device, *(["--tiny"] if args.tiny else [])]
            run = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
            lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
            result = json.loads(lines[-1]) if lines else {"case": case, "status": "failed",
                                                          "stderr": run.stderr[-2000:]}
            if args.out:
                with args.out.with_suffix(".log").open("a") as log:
                    log.write(f"==== {case} {' '.join(command[3:])}\n{run.stderr}\n")
        result.update(steps=steps, cap_gb=args.cap_gb or None)
        line = json.dumps(result)
        print(line, flush=True)
        if args.out:
            with args.out.open("a") as out:
                out.write(line + "\n")


if __name__ == "__main__":
    main()
