"""Author the bundled workflows: each is written here as an API prompt, loaded into the real ComfyUI
frontend (`app.loadApiJson`, headless Chromium) and saved as the UI-format file users open and share
(`app.graph.serialize()`), so `workflows/*.json` is exactly what ComfyUI itself writes.

    .devhost/venv/bin/python -m devhost.make_workflows

Model names are the usual user file names; the example runner substitutes the tiny models and
shrinks sizes and steps (devhost/run_examples.py).
"""

from __future__ import annotations

import json
import sys

from .browser import HeadlessChromium
from .comfy_server import ComfyServer
from .paths import DEVHOST, REPO_ROOT
from .ui_workflow import ui_to_api

CHECKPOINT = "v1-5-pruned-emaonly.safetensors"
CLIP_VISION = "clip_vision_vit_l14.safetensors"


def node(class_type: str, title: str | None = None, **inputs) -> dict:
    entry = {"class_type": class_type, "inputs": inputs}
    if title:
        entry["_meta"] = {"title": title}
    return entry


def inst_models_and_painting(style_filename: str) -> dict:
    return {
        "1": node("CheckpointLoaderSimple", ckpt_name=CHECKPOINT),
        "2": node("CLIPVisionLoader", "CLIP vision (ViT-L/14)", clip_name=CLIP_VISION),
        "3": node("LoadImage", "The painting", image="example_painting.png"),
        "4": node("InST_TrainStyle", model=["1", 0], clip=["1", 1], vae=["1", 2], clip_vision=["2", 0],
                  painting=["3", 0], steps=1000, learning_rate=1e-4, seed=23, resolution=512, batch_size=1,
                  random_flip=True, attend_to="image_embed", vectors_per_token=1, gradient_checkpointing="auto",
                  precision="fp32", preview_every=100, filename=style_filename),
        "5": node("SaveImage", "Loss curve", images=["4", 1], filename_prefix="inst/loss_curve"),
        "6": node("CLIPVisionEncode", clip_vision=["2", 0], image=["3", 0], crop="center"),
        "7": node("CLIPTextEncode", "Negative (empty, as the paper)", text="", clip=["1", 1]),
    }


def inst_train_and_generate() -> dict:
    prompt = inst_models_and_painting("inst/example_style")
    prompt.update({
        "8": node("InST_ExportEmbedding", style=["4", 0], name="inst_example_style", clip_vision_output=["6", 0]),
        "9": node("InST_StyleConditioning", clip=["1", 1], style=["4", 0],
                  text="a portrait of a woman in the style of *", placeholder="*", clip_vision_output=["6", 0]),
        "10": node("EmptyLatentImage", width=512, height=512, batch_size=1),
        "11": node("KSampler", model=["1", 0], positive=["9", 0], negative=["7", 0], latent_image=["10", 0],
                   seed=7, steps=30, cfg=7.0, sampler_name="euler", scheduler="normal", denoise=1.0),
        "12": node("VAEDecode", samples=["11", 0], vae=["1", 2]),
        "13": node("SaveImage", images=["12", 0], filename_prefix="inst/generated"),
        # the stock encoder's text is made from the export node's output, so it runs after the export
        # and again whenever the style is retrained
        "18": node("StringReplace", "Prompt with the exported embedding",
                   string="a portrait of a woman in the style of *", find="*", replace=["8", 0]),
        "14": node("CLIPTextEncode", "Stock encoder with the exported embedding", text=["18", 0], clip=["1", 1]),
        "15": node("KSampler", model=["1", 0], positive=["14", 0], negative=["7", 0], latent_image=["10", 0],
                   seed=7, steps=30, cfg=7.0, sampler_name="euler", scheduler="normal", denoise=1.0),
        "16": node("VAEDecode", samples=["15", 0], vae=["1", 2]),
        "17": node("SaveImage", images=["16", 0], filename_prefix="inst/generated_with_embedding"),
    })
    return prompt


def inst_style_transfer() -> dict:
    prompt = inst_models_and_painting("inst/example_transfer_style")
    prompt.update({
        "8": node("LoadImage", "The content photo", image="example_content.png"),
        "9": node("InST_StyleConditioning", clip=["1", 1], style=["4", 0], text="*", placeholder="*",
                  clip_vision_output=["6", 0]),
        "10": node("VAEEncode", "Content latent", pixels=["8", 0], vae=["1", 2]),
        "11": node("VAEEncode", "Painting latent (for AdaIN)", pixels=["3", 0], vae=["1", 2]),
        "12": node("InST_StyleTransfer", model=["1", 0], positive=["9", 0], negative=["7", 0], content=["10", 0],
                   style=["11", 0], strength=0.7, steps=50, cfg=10.0, sampler_name="euler", scheduler="normal",
                   seed=42, mode="self_consistent"),
        "13": node("VAEDecode", samples=["12", 0], vae=["1", 2]),
        "14": node("SaveImage", images=["13", 0], filename_prefix="inst/transfer"),
        # the same transfer with stock SamplerCustomAdvanced: only the NOISE comes from this package
        "15": node("BasicScheduler", "Strength = denoise", model=["1", 0], scheduler="normal", steps=35,
                   denoise=0.7),
        "16": node("InST_InversionNoise", model=["1", 0], positive=["9", 0], sigmas=["15", 0], noise_seed=42),
        "17": node("CFGGuider", model=["1", 0], positive=["9", 0], negative=["7", 0], cfg=10.0),
        "18": node("KSamplerSelect", sampler_name="euler"),
        "19": node("SamplerCustomAdvanced", noise=["16", 0], guider=["17", 0], sampler=["18", 0], sigmas=["15", 0],
                   latent_image=["10", 0]),
        "20": node("VAEDecode", samples=["19", 0], vae=["1", 2]),
        "21": node("SaveImage", images=["20", 0], filename_prefix="inst/transfer_sampler_custom"),
    })
    return prompt


STYLEFORGE_TRAINING = dict(
    token="zwx", background_token="ohwx", style_template="{} style", aux_prompt="style", aux_weight=1.0,
    background_aux_weight=1.0, min_aux_images=4, rank=16, alpha=16.0, include_conv=False, steps=1000,
    unet_lr=1e-4, text_encoder_lr=0.0, lr_schedule="constant", warmup_steps=0, batch_size=1, grad_accumulation=1,
    min_snr_gamma=0.0, noise_offset=0.0, seed=0, resolution=512, crops_per_image=1, random_flip=True,
    gradient_checkpointing="auto", passes="auto", precision="auto", preview_every=100, checkpoint_every=250,
    resume_from="[none]")


def styleforge_generate(prompt: dict, trainer: str, text: str, first: int, prefix: str) -> None:
    """Sample with the trainer's LoRA-patched MODEL and CLIP, and save the image."""
    ids = [str(first + i) for i in range(5)]
    prompt.update({
        ids[0]: node("CLIPTextEncode", text=text, clip=[trainer, 1]),
        ids[1]: node("CLIPTextEncode", "Negative", text="blurry, low quality", clip=[trainer, 1]),
        ids[2]: node("EmptyLatentImage", width=512, height=512, batch_size=1),
        ids[3]: node("KSampler", model=[trainer, 0], positive=[ids[0], 0], negative=[ids[1], 0],
                     latent_image=[ids[2], 0], seed=42, steps=25, cfg=7.0, sampler_name="euler", scheduler="normal",
                     denoise=1.0),
        ids[4]: node("VAEDecode", samples=[ids[3], 0], vae=["1", 2]),
    })
    prompt[str(first + 5)] = node("SaveImage", images=[ids[4], 0], filename_prefix=prefix)


def styleforge_single() -> dict:
    prompt = {
        "1": node("CheckpointLoaderSimple", ckpt_name=CHECKPOINT),
        "2": node("StyleForge_ImageSet", "StyleRef images ([V] style)", folder="styleforge_example/styleref"),
        "3": node("StyleForge_ImageSet", "Aux images (style)", folder="styleforge_example/aux"),
        "4": node("StyleForge_Train", model=["1", 0], clip=["1", 1], vae=["1", 2], style_images=["2", 0],
                  aux=["3", 0], method="Single", checkpoint_name="styleforge/single_checkpoint",
                  **STYLEFORGE_TRAINING),
        "5": node("StyleForge_SaveLoRA", lora=["4", 2], filename="styleforge/single_style", precision="fp16"),
        "6": node("SaveImage", "Loss curve", images=["4", 3], filename_prefix="styleforge/single_loss"),
    }
    styleforge_generate(prompt, "4", "a portrait of a woman in a garden, zwx style", 10, "styleforge/single")
    return prompt


def styleforge_multi() -> dict:
    prompt = {
        "1": node("CheckpointLoaderSimple", ckpt_name=CHECKPOINT),
        "2": node("StyleForge_ImageSet", "People ([V] style)", folder="styleforge_example/people"),
        "3": node("StyleForge_ImageSet", "Backgrounds ([W] style)", folder="styleforge_example/backgrounds"),
        "4": node("StyleForge_ImageSet", "Aux images (style)", folder="styleforge_example/aux"),
        "5": node("StyleForge_Train", model=["1", 0], clip=["1", 1], vae=["1", 2], style_images=["2", 0],
                  backgrounds=["3", 0], aux=["4", 0], method="Multi", checkpoint_name="styleforge/multi_checkpoint",
                  **STYLEFORGE_TRAINING),
        "6": node("StyleForge_SaveLoRA", lora=["5", 2], filename="styleforge/multi_style", precision="fp16"),
        "7": node("SaveImage", "Loss curve", images=["5", 3], filename_prefix="styleforge/multi_loss"),
    }
    styleforge_generate(prompt, "5", "a portrait of a woman, zwx style, standing in a city street, ohwx style", 10,
                        "styleforge/multi")
    return prompt


WORKFLOWS = {
    "inst_train_and_generate": inst_train_and_generate,
    "inst_style_transfer": inst_style_transfer,
    "styleforge_single": styleforge_single,
    "styleforge_multi": styleforge_multi,
}

READY_JS = ("!!(window.app && window.app.graph && window.LiteGraph && "
            "window.LiteGraph.registered_node_types['InST_TrainStyle'])")


def without_meta(prompt: dict) -> dict:
    return {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in prompt.items()}


# The frontend gives every seed a "control after generate" widget, "randomize" by default: a new seed
# at every queue, so a trainer would retrain when only a generation prompt changed. The bundled
# workflows keep every seed fixed (reproducible, and a re-queue reuses the trained result).
FIX_SEEDS_JS = ("for (const n of app.graph._nodes) for (const w of n.widgets || []) "
                "if (w.name === 'control_after_generate') w.value = 'fixed';")


def serialize_in_frontend(page: HeadlessChromium, prompt: dict, name: str) -> dict:
    js = f"(async () => {{ await app.loadApiJson({json.dumps(prompt)}, {json.dumps(name)}); {FIX_SEEDS_JS} " \
         "return JSON.stringify(app.graph.serialize()); })()"
    return json.loads(page.evaluate(js, await_promise=True, timeout=120))


def main() -> int:
    server = ComfyServer(DEVHOST / "logs" / "make-workflows.log")
    page = HeadlessChromium(DEVHOST / "logs" / "make-workflows-chromium.log")
    try:
        server.start()
        object_info = server.get("/object_info")
        page.start()
        page.navigate(server.url)
        page.wait_for(READY_JS, timeout=120)
        for name, build in WORKFLOWS.items():
            prompt = build()
            workflow = serialize_in_frontend(page, prompt, name)
            converted = without_meta(ui_to_api(workflow, object_info))
            if converted != without_meta(prompt):
                print(f"make_workflows: {name} does not convert back to its prompt", file=sys.stderr)
                return 1
            path = REPO_ROOT / "workflows" / f"{name}.json"
            path.write_text(json.dumps(workflow, indent=1) + "\n")
            print(f"wrote {path.relative_to(REPO_ROOT)}")
    finally:
        page.stop()
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
