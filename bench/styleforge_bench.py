"""StyleForge training speed and memory, side by side with ComfyUI's TrainLoraNode and the floor.

Run with the dev host's Python from the repository root:

    .devhost/venv/bin/python bench/styleforge_bench.py [--sizes 64 256] [--rounds 3] [--runners ...]
    .devhost/venv/bin/python bench/styleforge_bench.py --full [--sizes 256 512]

Everything runs on the same SD1.5 checkpoint (the tiny one, or with `--full` a random-weight SD1.5 of
the published size, 860M UNet parameters and the KL VAE, built once on demand) and the same procedural
images, fp32 on the CPU, LoRA rank 8, no gradient checkpointing, each measurement in its own subprocess
(a fresh ComfyUI, so runs cannot share caches or patched modules, and `ru_maxrss` is that run's own
peak memory):

- `floor`: the bare UNet forward + backward on a StyleForge step's samples (one StyleRef, one Aux
  latent, random timesteps), weights frozen, gradients to the input only, through the same
  `apply_model` path both trainers use. Nothing can train faster than this.
- `styleforge`: this package's trainer (`train_styleforge`) as the node defaults it (`passes` auto),
  text encoder frozen, but gradient checkpointing off at every size; 2 samples per step.
- `styleforge_batched`, `styleforge_separate`: the trainer with `passes` set to "one batch" (the
  StyleRef and Aux samples in one UNet batch) and "separate" (one after the other), checkpointing auto.
- `styleforge_gc`: the same with gradient checkpointing on (the node's default from 512 px).
- `trainlora_b1` / `trainlora_b2`: ComfyUI's TrainLoraNode (`execute` called in-process, under
  inference mode as the server calls it) on the VAE latents of the same images with the cached
  conditioning of their prompt, batch size 1 and 2, fp32 training and LoRA dtypes, AdamW, MSE.
- `trainlora_b1_fused`: TrainLoraNode batch 1 given the attention our trainer trains with
  (`memory_efficient_attention`: torch's fused attention where the host's keeps the attention
  matrix, as ComfyUI's CPU default does), to show how much of the difference is attention.

Step times come from ComfyUI's progress-bar hook, which both trainers drive once per optimizer step:
the first `--warmup` steps are dropped and the median of the rest is taken. The runners run in
`--rounds` interleaved rounds (every runner once per round), so drift in the machine's speed hits
them alike; each figure is the median over rounds. Runners not in the default set: see `--runners`.
Peak memory: the peak RSS is reset after the checkpoint is loaded (its loading peak would hide a
small run's), so "peak MB" is the peak while training and "+train" what training added over the
loaded models, both including the setup (VAE encoding: at 512 px its peak can pass a step's); "steps MB" is
the peak over the timed steps alone; `process_peak_mb` in the JSON lines is the whole subprocess's
`ru_maxrss`.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import common
import recorded
from common import StepClock

RUNNERS = ("floor", "styleforge", "styleforge_batched", "styleforge_separate", "styleforge_gc", "trainlora_b1",
           "trainlora_b2", "trainlora_b1_fused")
DEFAULT_RUNNERS = ("floor", "styleforge", "trainlora_b1", "trainlora_b1_fused")
VARIANTS = ("styleforge", "styleforge_batched", "styleforge_separate", "styleforge_gc")
TRAINLORA = ("trainlora_b1", "trainlora_b2", "trainlora_b1_fused")
MEDIANS = ("median_step_s", "samples_per_s", "peak_rss_mb", "train_rss_mb", "steps_peak_mb")
RANK = 8
IMAGES_PER_SET = 4


def _images(size: int):
    """(StyleRef batch, Aux batch) of the procedural example images, centre-cropped to size x size."""
    import numpy as np
    import torch
    from inst_styleforge.training_kit.images import resize_and_crop

    from devhost.example_inputs import painting, person

    def batch(images):
        tensors = [torch.from_numpy(np.asarray(i, dtype=np.float32) / 255.0)[None] for i in images]
        return torch.cat([resize_and_crop(t, size, None) for t in tensors])

    return (batch([painting(100 + i) for i in range(IMAGES_PER_SET)]),
            batch([person(400 + i) for i in range(IMAGES_PER_SET)]))


def _load(ckpt: Path):
    import comfy.sd
    import torch

    with torch.inference_mode():
        model, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(str(ckpt), output_vae=True, output_clip=True)
    return model, clip, vae


def run_floor(host, model, clip, vae, size: int, steps: int, clock: StepClock) -> int:
    import torch
    from inst_styleforge.training_kit.diffusion_loss import prediction_mse

    ref, aux = _images(size)
    generator = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        encoded = host.images.vae_encode(vae, torch.cat([ref, aux])).float()
        latents = host.diffusion.latent_to_model_space(model, encoded)
    with torch.inference_mode(False), torch.enable_grad(), host.trainable.training_context(model, clip):
        latents = latents.clone()
        cond, pooled = (t.detach().clone() if t is not None else None
                        for t in host.text.encode_tokens_for_training(clip, host.text.tokenize(clip, "zwx style")))
        for _ in range(steps):
            picks = [int(torch.randint(0, IMAGES_PER_SET, (1,), generator=generator)) + k * IMAGES_PER_SET
                     for k in (0, 1)]
            x = latents[picks].clone().requires_grad_(True)
            timesteps = torch.randint(0, host.diffusion.num_timesteps(model), (2,), generator=generator)
            noise = torch.randn(x.shape, generator=generator)
            prediction_mse(model, x, noise, host.diffusion.sigma_at(model, timesteps), cond.expand(2, -1, -1),
                           pooled).mean().backward()
            clock(0, steps, None)
    return 2


def run_styleforge(host, model, clip, vae, size: int, steps: int, clock: StepClock, **options) -> int:
    import torch
    from inst_styleforge.styleforge_core import datasets, training

    ref, aux = _images(size)
    sets = training.TrainingSets(datasets.from_batch(ref), datasets.from_batch(aux))
    config = training.StyleForgeConfig(steps=steps, resolution=size, rank=RANK, alpha=RANK, precision="fp32",
                                       **options)
    with torch.inference_mode():
        training.train_styleforge(model, clip, vae, sets, config, host.progress.StepProgress(steps))
    return 2


def run_trainlora(host, model, clip, vae, size: int, steps: int, clock: StepClock, batch_size: int,
                  fused_attention: bool = False) -> int:
    import contextlib

    import torch
    from comfy_extras.nodes_train import TrainLoraNode

    ref, aux = _images(size)
    attention = host.trainable.memory_efficient_attention(model) if fused_attention else contextlib.nullcontext()
    with torch.inference_mode(), attention:
        latents = host.images.vae_encode(vae, torch.cat([ref, aux]))
        positive = host.text.encode_tokens(clip, host.text.tokenize(clip, "zwx style"))
        TrainLoraNode.execute(
            model=[model], latents=[{"samples": latents[i:i + 1]} for i in range(len(latents))],
            positive=[positive], batch_size=[batch_size], grad_accumulation_steps=[1], steps=[steps],
            learning_rate=[1e-4], rank=[RANK], optimizer=["AdamW"], loss_function=["MSE"], seed=[0],
            training_dtype=["fp32"], lora_dtype=["fp32"], algorithm=["LoRA"], gradient_checkpointing=[False],
            existing_lora=["[None]"])
    return batch_size


def worker(runner: str, size: int, steps: int, warmup: int, ckpt: Path, threads: int | None) -> dict:
    import torch

    from devhost.inprocess import import_comfy, import_package

    import_comfy()
    if threads:
        torch.set_num_threads(threads)

    import_package()
    import inst_styleforge.host as host

    model, clip, vae = _load(ckpt)
    loaded_mb = common.status_mb("VmRSS")
    common.reset_peak_rss()
    clock = StepClock(peak_from=warmup + 1)  # the timed steps start when the warm-up ones have ended
    total = steps + warmup + 1
    run = {"floor": run_floor, "styleforge": lambda *a: run_styleforge(*a, gradient_checkpointing="off"),
           "styleforge_gc": lambda *a: run_styleforge(*a, gradient_checkpointing="on"),
           "styleforge_batched": lambda *a: run_styleforge(*a, passes="one batch"),
           "styleforge_separate": lambda *a: run_styleforge(*a, passes="separate"),
           "trainlora_b1": lambda *a: run_trainlora(*a, batch_size=1),
           "trainlora_b2": lambda *a: run_trainlora(*a, batch_size=2),
           "trainlora_b1_fused": lambda *a: run_trainlora(*a, batch_size=1, fused_attention=True)}[runner]
    samples_per_step = run(host, model, clip, vae, size, total, clock)
    seconds = clock.step_seconds(warmup)
    median = statistics.median(seconds)
    steps_peak = common.status_mb("VmHWM")
    peak = max(clock.setup_peak_mb, steps_peak)
    return {"runner": runner, "size": size, "steps_timed": len(seconds), "median_step_s": median,
            "samples_per_s": samples_per_step / median, "process_peak_mb": common.process_peak_mb(),
            "peak_rss_mb": peak, "train_rss_mb": peak - loaded_mb, "steps_peak_mb": steps_peak,
            "threads": torch.get_num_threads()}


def measure(runner: str, size: int, args) -> dict:
    passthrough = ["--sizes", str(size), "--steps", str(args.steps), "--warmup", str(args.warmup),
                   "--ckpt", str(args.ckpt)] + (["--threads", str(args.threads)] if args.threads else [])
    return common.run_measurement(Path(__file__), runner, passthrough)


def median_over_rounds(runs: list[dict]) -> dict:
    return runs[0] | {key: statistics.median(r[key] for r in runs) for key in MEDIANS} | {"rounds": len(runs)}


def report(results: list[dict]) -> list[dict]:
    """Prints the medians over rounds and the ratios; returns the medians."""
    runs: dict[tuple[int, str], list[dict]] = {}
    for r in results:
        runs.setdefault((r["size"], r["runner"]), []).append(r)
    medians = [median_over_rounds(group) for group in runs.values()]
    print(f"\nmedians over {medians[0]['rounds']} rounds")
    print(f"{'size':>5} {'runner':<20} {'s/step':>8} {'samples/s':>10} {'peak MB':>8} {'+train MB':>9} "
          f"{'steps MB':>8}")
    for r in medians:
        print(f"{r['size']:>5} {r['runner']:<20} {r['median_step_s']:>8.3f} {r['samples_per_s']:>10.2f} "
              f"{r['peak_rss_mb']:>8.0f} {r['train_rss_mb']:>9.0f} {r['steps_peak_mb']:>8.0f}")
    for size in sorted({r["size"] for r in medians}):
        by = {r["runner"]: r for r in medians if r["size"] == size}
        for variant in (n for n in VARIANTS if n in by):
            ours = by[variant]
            print(f"\n{variant}, {size} px (threads {ours['threads']}):")
            if "floor" in by:
                floor = by["floor"]
                print(f"  vs floor: {floor['samples_per_s'] / ours['samples_per_s']:.2f}x the floor's time per "
                      f"sample; peak {ours['peak_rss_mb']:.0f} vs {floor['peak_rss_mb']:.0f} MB, over the timed "
                      f"steps alone {ours['steps_peak_mb']:.0f} vs {floor['steps_peak_mb']:.0f} MB")
            for name in (n for n in TRAINLORA if n in by):
                print(f"  vs {name}: {ours['samples_per_s'] / by[name]['samples_per_s']:.2f}x samples/s, peak "
                      f"memory {ours['peak_rss_mb']:.0f} vs {by[name]['peak_rss_mb']:.0f} MB (+train "
                      f"{ours['train_rss_mb']:.0f} vs {by[name]['train_rss_mb']:.0f} MB)")
    return medians


def main() -> None:
    from devhost.fixtures import FULL_SD15, TINY_SD15, install

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="default: 64 256 (--full: 256)")
    parser.add_argument("--steps", type=int, default=7, help="timed steps per run (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median over rounds)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--ckpt", type=Path, default=None, help="default: the tiny SD1.5 (TAESD) fixture")
    parser.add_argument("--full", action="store_true", help="the full-size SD1.5 (default size 256 px)")
    parser.add_argument("--runners", nargs="+", default=list(DEFAULT_RUNNERS), choices=RUNNERS)
    parser.add_argument("--measure", choices=RUNNERS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.sizes = args.sizes or ([256] if args.full else [64, 256])
    if args.measure:
        print(json.dumps(worker(args.measure, args.sizes[0], args.steps, args.warmup, args.ckpt, args.threads)))
        return
    args.ckpt = args.ckpt or install(FULL_SD15 if args.full else TINY_SD15)
    results = []
    for _ in range(args.rounds):
        for size in args.sizes:
            for runner in args.runners:
                results.append(measure(runner, size, args))
                print(json.dumps(results[-1]), flush=True)
    medians = report(results)
    runners = "" if args.runners == list(DEFAULT_RUNNERS) else "_" + "-".join(args.runners)
    recorded.record(f"styleforge_{args.ckpt.stem}_{'_'.join(map(str, args.sizes))}px{runners}",
                    {"steps": args.steps, "warmup": args.warmup, "rounds": args.rounds, "medians": medians})


if __name__ == "__main__":
    main()
