"""InST style-inversion trainer: median step time against the floor and ComfyUI's TrainLoraNode.

    .devhost/venv/bin/python bench/inst_bench.py [--size 64] [--steps 15] [--rounds 3]
    .devhost/venv/bin/python bench/inst_bench.py --full [--size 256]

The tiny SD1.5, or with `--full` a random-weight SD1.5 of the published size (860M UNet parameters,
KL VAE), built once on demand.

- trainer: this package's train_style (paper defaults, batch 1, fp32).
- floor: what the method cannot avoid: a token embedding that needs a gradient, through the frozen
  text encoder and the frozen UNet, forward and backward, on the same painting latent; no encoder,
  no optimizer.
- TrainLoraNode: ComfyUI's own trainer (rank 8, fp32, no gradient checkpointing) on the same latent
  and the prompt "*" (it trains the UNet only; shown as the anchor users have).
Each runs in its own process; peak RSS is the peak while it runs, after the models are loaded (all
three load the same models). Step times are medians after a warm-up of 3 steps; the three run in
`--rounds` interleaved rounds, and each figure is the median over rounds.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import common
import recorded
import torch

WARMUP = 3
MODELS = {False: "tiny_sd15_taesd", True: "full_sd15"}  # by --full


def load(size: int, model_name: str):
    import comfy.clip_vision
    import comfy.sd
    import numpy as np

    from devhost.example_inputs import painting
    from devhost.paths import BASE_DIR

    ckpt = BASE_DIR / "models" / "checkpoints" / f"{model_name}.safetensors"
    with torch.inference_mode():
        model, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(str(ckpt), output_vae=True, output_clip=True)
        vision = comfy.clip_vision.load(str(BASE_DIR / "models" / "clip_vision" / "tiny_clip_vision_vitl.safetensors"))
    image = torch.from_numpy(np.asarray(painting(0).resize((size, size)), dtype=np.float32) / 255)[None]
    common.reset_peak_rss()  # the peak reported is the one while training, models loaded
    return model, clip, vae, vision, image


def measure_trainer(size: int, steps: int, model_name: str) -> None:
    from inst_styleforge import host
    from inst_styleforge.inst_core.training import InSTTrainingConfig, train_style

    model, clip, vae, vision, image = load(size, model_name)
    clock = common.StepClock()
    config = InSTTrainingConfig(steps=steps + WARMUP, resolution=size, gradient_checkpointing="off")
    with torch.inference_mode():
        train_style(model, clip, vae, vision, [image], config, host.progress.StepProgress(steps + WARMUP))
    common.report("trainer", clock.step_seconds(WARMUP))


def measure_floor(size: int, steps: int, model_name: str) -> None:
    from inst_styleforge import host
    from inst_styleforge.inst_core.style_prompt import StylePrompt
    from inst_styleforge.training_kit.diffusion_loss import prediction_error

    model, clip, vae, _, image = load(size, model_name)
    with torch.inference_mode(False), torch.no_grad():
        latent = host.diffusion.latent_to_model_space(model, vae.encode(image).float())
    times = []
    with host.trainable.training_context(model, clip):
        prompt = StylePrompt(clip, "*", "*", 1)
        token = torch.randn(1, 768, requires_grad=True)
        generator = torch.Generator().manual_seed(0)
        for _ in range(steps + WARMUP):
            t0 = common.time.perf_counter()
            cond, pooled = host.text.encode_tokens_for_training(clip, prompt.tokens({"l": token}))
            sigma = host.diffusion.sigma_at(model, torch.randint(0, 1000, (1,), generator=generator))
            noise = torch.randn(latent.shape, generator=generator)
            x = host.diffusion.noised(model, latent, noise, sigma)
            inputs = host.diffusion.model_inputs(model, cond, pooled, latent)
            denoised = host.diffusion.predict_denoised(model, x, sigma, inputs)
            prediction_error(model, denoised, latent, sigma).pow(2).mean().backward()
            assert token.grad is not None and token.grad.abs().sum() > 0
            token.grad = None
            times.append(common.time.perf_counter() - t0)
    common.report("floor", times[WARMUP:])


def measure_trainlora(size: int, steps: int, model_name: str) -> None:
    from comfy_extras.nodes_train import TrainLoraNode

    model, clip, vae, _, image = load(size, model_name)
    with torch.inference_mode():
        latent = {"samples": vae.encode(image)}
        positive = clip.encode_from_tokens_scheduled(clip.tokenize("*"))
        clock = common.StepClock()
        # two latent dicts: a single one hits the 0.3.75 bug (UnboundLocalError: multi_res)
        TrainLoraNode.execute(model=[model], latents=[latent, latent], positive=[positive], batch_size=[1],
                              steps=[steps + WARMUP], grad_accumulation_steps=[1], learning_rate=[1e-4], rank=[8],
                              optimizer=["AdamW"], loss_function=["MSE"], seed=[0], training_dtype=["fp32"],
                              lora_dtype=["fp32"], algorithm=["LoRA"], gradient_checkpointing=[False],
                              existing_lora=["[None]"])
    common.report("TrainLoraNode", clock.step_seconds(WARMUP))


MEASUREMENTS = {"trainer": measure_trainer, "floor": measure_floor, "TrainLoraNode": measure_trainlora}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds (median over rounds)")
    parser.add_argument("--full", action="store_true", help="the full-size SD1.5")
    parser.add_argument("--measure", choices=list(MEASUREMENTS))
    args = parser.parse_args()
    common.setup()
    model_name = MODELS[args.full]
    if args.full:
        from devhost.fixtures import FULL_SD15, install

        install(FULL_SD15)
    if args.measure:
        MEASUREMENTS[args.measure](args.size, args.steps, model_name)
        return
    passthrough = ["--size", str(args.size), "--steps", str(args.steps)] + (["--full"] if args.full else [])
    runs: dict[str, list[dict]] = {name: [] for name in MEASUREMENTS}
    for _ in range(args.rounds):
        for name in MEASUREMENTS:
            runs[name].append(common.run_measurement(Path(__file__), name, passthrough))
    results = {name: {key: statistics.median(r[key] for r in rs) for key in ("median_s", "peak_rss_mb")}
               for name, rs in runs.items()}
    trainer, floor, anchor = results["trainer"], results["floor"], results["TrainLoraNode"]
    print(f"InST trainer benchmark, {model_name}, {args.size} px, fp32 CPU, median of {args.steps} steps, "
          f"median of {args.rounds} interleaved rounds")
    for name, r in results.items():
        print(f"  {name:<14} {r['median_s']:.3f} s/step   peak RSS {r['peak_rss_mb']} MiB")
    print(f"  trainer / floor          {common.ratio(trainer['median_s'], floor['median_s'])}   (target <= 1.1)")
    print(f"  trainer / TrainLoraNode  {common.ratio(trainer['median_s'], anchor['median_s'])}")
    print(f"  peak RSS trainer / floor {common.ratio(trainer['peak_rss_mb'], floor['peak_rss_mb'])}")
    recorded.record(f"inst_{model_name}_{args.size}px", {"size": args.size, "steps": args.steps,
                                                         "rounds": args.rounds, **results})


if __name__ == "__main__":
    main()
