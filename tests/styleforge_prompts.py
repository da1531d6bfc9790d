"""API-format StyleForge prompts for the end-to-end tests: our nodes with stock nodes around them."""

from prompts import TINY_CKPT

EXAMPLE = "styleforge_example"
OPTIONS_NODE = "30"
# What every test run shrinks: 64 px, a handful of steps, fast learning.
TINY_TRAINING = {"resolution": 64, "steps": 1, "unet_lr": 1e-3, "rank": 4}
# StyleForge Training Options as the tests set them (every input is required in an API prompt).
OPTIONS = {"style_template": "{} style", "aux_prompt": "style", "min_aux_images": 4, "alpha": 4.0,
           "include_conv": False, "text_encoder_lr": 0.0, "lr_schedule": "constant", "warmup_steps": 0,
           "batch_size": 1, "grad_accumulation": 1, "min_snr_gamma": 0.0, "noise_offset": 0.0, "crops_per_image": 1,
           "random_flip": True, "gradient_checkpointing": "auto", "passes": "auto", "precision": "auto",
           "checkpoint_every": 0, "checkpoint_name": "styleforge_test/checkpoint", "resume_from": "[none]",
           "aspect_buckets": False}


def image_set(folder: str) -> dict:
    return {"class_type": "StyleForge_ImageSet", "inputs": {"folder": f"{EXAMPLE}/{folder}"}}


def trainer(sets: dict[str, str], multi: bool = False, **overrides) -> dict:
    """The trainer node (Single, or Multi) on the checkpoint of node "1", reading the image-set nodes
    named in `sets`, and its options node: {trainer id "4" or "5": ..., OPTIONS_NODE: ...}. Overrides
    go to whichever of the two has the input."""
    main = {"model": ["1", 0], "clip": ["1", 1], "vae": ["1", 2], "token": "zwx", "aux_weight": 1.0, "seed": 0,
            **TINY_TRAINING, "options": [OPTIONS_NODE, 0]}
    if multi:
        main.update(background_token="ohwx", background_aux_weight=1.0)
    options = dict(OPTIONS)
    for name, value in overrides.items():
        (options if name in OPTIONS else main)[name] = value
    main.update({name: [node, 0] for name, node in sets.items()})
    return {"4" if not multi else "5": {"class_type": "StyleForge_TrainMulti" if multi else "StyleForge_Train",
                                        "inputs": main},
            OPTIONS_NODE: {"class_type": "StyleForge_Options", "inputs": options}}


def sample_to_latent(model: list, clip: list, text: str, prefix: str, seed: int = 7) -> dict:
    """Nodes 90..94: encode `text`, sample 64 px, save the latent (stock SaveLatent)."""
    return {
        "90": {"class_type": "CLIPTextEncode", "inputs": {"text": text, "clip": clip}},
        "91": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": clip}},
        "92": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "93": {"class_type": "KSampler", "inputs": {
            "model": model, "positive": ["90", 0], "negative": ["91", 0], "latent_image": ["92", 0], "seed": seed,
            "steps": 4, "cfg": 5.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}},
        "94": {"class_type": "SaveLatent", "inputs": {"samples": ["93", 0], "filename_prefix": prefix}},
    }


def train_single(filename: str, latent_prefix: str, ckpt: str = TINY_CKPT, **overrides) -> dict:
    """Single-StyleForge: train, save the LoRA, sample '[V] style' with the trainer's MODEL and CLIP."""
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "2": image_set("styleref"),
        "3": image_set("aux"),
        **trainer({"style_images": "2", "aux": "3"}, **overrides),
        "5": {"class_type": "StyleForge_SaveLoRA", "inputs": {"lora": ["4", 2], "filename": filename,
                                                             "precision": "fp32"}},
        **sample_to_latent(["4", 0], ["4", 1], "zwx style", latent_prefix),
    }


def train_multi(filename: str, ckpt: str = TINY_CKPT, lora_precision: str = "fp16", **overrides) -> dict:
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "2": image_set("people"),
        "3": image_set("backgrounds"),
        "4": image_set("aux"),
        **trainer({"people": "2", "backgrounds": "3", "aux": "4"}, multi=True, **overrides),
        "6": {"class_type": "StyleForge_SaveLoRA", "inputs": {"lora": ["5", 2], "filename": filename,
                                                             "precision": lora_precision}},
    }


def stock_lora_sample(lora_name: str, latent_prefix: str, ckpt: str = TINY_CKPT) -> dict:
    """The saved LoRA through stock LoraLoader (MODEL and CLIP), sampled like `train_single`."""
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "2": {"class_type": "LoraLoader", "inputs": {"model": ["1", 0], "clip": ["1", 1], "lora_name": lora_name,
                                                     "strength_model": 1.0, "strength_clip": 1.0}},
        **sample_to_latent(["2", 0], ["2", 1], "zwx style", latent_prefix),
    }
