"""InST stochastic inversion: its cost over plain img2img at the same steps.

    .devhost/venv/bin/python bench/inversion_bench.py [--size 64] [--steps 10] [--repeats 7]

Both run on the tiny SD1.5 in one process, alternating, with the same content latent, conditioning,
strength, sampler, scheduler, steps and CFG: plain img2img is stock `comfy.sample.sample` with
denoise = strength; the inversion is this package's `style_transfer` (self-consistent mode). UNet
forward calls are counted with a forward hook (each CFG step is one batched call for cond and
uncond); times are medians. Target: one extra model evaluation, no more.
"""

from __future__ import annotations

import argparse
import statistics
import time

import common
import recorded
import torch

STRENGTH = 0.7
CFG = 7.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    common.setup()
    import comfy.sample
    import comfy.sd
    import numpy as np
    from inst_styleforge.inst_core.inversion import style_transfer

    from devhost.example_inputs import content_photo
    from devhost.paths import BASE_DIR

    ckpt = BASE_DIR / "models" / "checkpoints" / "tiny_sd15_taesd.safetensors"
    with torch.inference_mode():
        model, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(str(ckpt), output_vae=True, output_clip=True)
        image = torch.from_numpy(np.asarray(content_photo(0).resize((args.size, args.size)), np.float32) / 255)[None]
        content = {"samples": vae.encode(image)}
        positive = clip.encode_from_tokens_scheduled(clip.tokenize("a cubist painting"))
        negative = clip.encode_from_tokens_scheduled(clip.tokenize(""))

    calls = {"n": 0}
    model.model.diffusion_model.register_forward_hook(lambda *_: calls.__setitem__("n", calls["n"] + 1))

    def img2img(seed: int):
        noise = comfy.sample.prepare_noise(content["samples"], seed)
        return comfy.sample.sample(model, noise, args.steps, CFG, "euler", "normal", positive, negative,
                                   content["samples"], denoise=STRENGTH, disable_pbar=True, seed=seed)

    def inversion(seed: int):
        return style_transfer(model, positive, negative, content, STRENGTH, args.steps, CFG, "euler", "normal", seed)

    results = {}
    with torch.inference_mode():
        for run in (img2img, inversion):  # warm-up
            run(0)
        times = {"img2img": [], "inversion": []}
        counts = {}
        for repeat in range(args.repeats):
            for name, run in (("img2img", img2img), ("inversion", inversion)):
                calls["n"] = 0
                t0 = time.perf_counter()
                run(repeat + 1)
                times[name].append(time.perf_counter() - t0)
                counts[name] = calls["n"]
        for name in times:
            results[name] = statistics.median(times[name])
    print(f"InST inversion vs plain img2img, tiny SD1.5, {args.size} px, {args.steps} steps, strength {STRENGTH}, "
          f"CFG {CFG}, median of {args.repeats}")
    for name in ("img2img", "inversion"):
        print(f"  {name:<10} {results[name]:.3f} s   UNet calls {counts[name]}")
    extra = counts["inversion"] - counts["img2img"]
    print(f"  inversion / img2img  {common.ratio(results['inversion'], results['img2img'])}   "
          f"extra UNet calls: {extra} (target: 1)")
    recorded.record(f"inversion_tiny_sd15_{args.size}px", {
        "size": args.size, "steps": args.steps, "repeats": args.repeats, "strength": STRENGTH, "cfg": CFG,
        "median_s": results, "unet_calls": counts})


if __name__ == "__main__":
    main()
