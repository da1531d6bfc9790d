"""API-format prompts built in tests, with stock ComfyUI nodes around the ones under test."""

TINY_CKPT = "tiny_sd15_taesd.safetensors"
SD2_V_CKPT = "tiny_sd2_768v.safetensors"
SDXL_CKPT = "tiny_sdxl_vega.safetensors"
SD35_CKPT = "tiny_sd35_medium.safetensors"
PIX2PIX_UNET = "tiny_sd15_pix2pix_unet.safetensors"  # a family no node here takes (UNETLoader)
# Every family the nodes support, as the tiny checkpoint of each (id -> file).
FAMILY_CKPTS = {"sd15": TINY_CKPT, "sd2_v": SD2_V_CKPT, "sdxl": SDXL_CKPT, "sd35": SD35_CKPT}


def txt2img(ckpt: str = TINY_CKPT, text: str = "a watercolor fox", seed: int = 1, size: int = 64,
            steps: int = 4, prefix: str = "test_txt2img") -> dict:
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": text, "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": size, "height": size, "batch_size": 1}},
        "5": {"class_type": "KSampler", "inputs": {
            "model": ["1", 0], "positive": ["2", 0], "negative": ["3", 0], "latent_image": ["4", 0],
            "seed": seed, "steps": steps, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal",
            "denoise": 1.0}},
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": prefix}},
    }


CLIP_VISION = "tiny_clip_vision_vitl.safetensors"


def sample_to_latent(positive: list, prefix: str, model: list | None = None, seed: int = 5, steps: int = 4,
                     first_id: int = 100) -> dict:
    """Nodes that sample 64x64 from `positive` (empty negative) and save the latent at full precision
    with stock SaveLatent; ids start at `first_id`. Expects a CheckpointLoaderSimple as node "1"."""
    n = [str(first_id + i) for i in range(4)]
    return {
        n[0]: {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
        n[1]: {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        n[2]: {"class_type": "KSampler", "inputs": {
            "model": model or ["1", 0], "positive": positive, "negative": [n[0], 0], "latent_image": [n[1], 0],
            "seed": seed, "steps": steps, "cfg": 5.0, "sampler_name": "euler", "scheduler": "normal",
            "denoise": 1.0}},
        n[3]: {"class_type": "SaveLatent", "inputs": {"samples": [n[2], 0], "filename_prefix": prefix}},
    }


INST_OPTIONS_NODE = "40"
# InST Training Options as the tests set them (every input is required in an API prompt).
INST_OPTIONS = {"batch_size": 1, "random_flip": True, "attend_to": "image_embed", "vectors_per_token": 1,
                "gradient_checkpointing": "auto", "precision": "fp32", "continue_from": "[none]"}


def inst_training(painting: str, steps: int = 4, filename: str = "tests/e2e_style", ckpt: str = TINY_CKPT,
                  **overrides) -> dict:
    """Train InST Style (node "4") with its options node; overrides go to whichever has the input."""
    inputs = {"model": ["1", 0], "clip": ["1", 1], "vae": ["1", 2], "clip_vision": ["2", 0], "painting": ["3", 0],
              "steps": steps, "learning_rate": 1e-3, "seed": 23, "resolution": 64, "filename": filename,
              "options": [INST_OPTIONS_NODE, 0]}
    options = dict(INST_OPTIONS)
    for name, value in overrides.items():
        (options if name in INST_OPTIONS else inputs)[name] = value
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "2": {"class_type": "CLIPVisionLoader", "inputs": {"clip_name": CLIP_VISION}},
        "3": {"class_type": "LoadImage", "inputs": {"image": painting}},
        "4": {"class_type": "InST_TrainStyle", "inputs": inputs},
        "5": {"class_type": "CLIPVisionEncode", "inputs": {"clip_vision": ["2", 0], "image": ["3", 0],
                                                           "crop": "center"}},
        INST_OPTIONS_NODE: {"class_type": "InST_Options", "inputs": options},
    }


def validation_node(prompts: str, prefix: str, clip_vision: list | None = None, every: int = 2,
                    steps: int = 2) -> dict:
    """Training Validation for a trainer's `validation` input: `steps` sampling steps per image."""
    inputs = {"prompts": prompts, "every": every, "seed": 5, "steps": steps, "cfg": 5.0, "filename_prefix": prefix}
    if clip_vision is not None:
        inputs["clip_vision"] = clip_vision
    return {"class_type": "StylePersonalization_Validation", "inputs": inputs}


def inversion_with_sampler_custom_advanced(content_image: str, seed: int = 3, prefix: str = "tests/inversion",
                                           strength: float = 0.6, ckpt: str = TINY_CKPT) -> dict:
    """Stock SamplerCustomAdvanced with its NOISE from InST Inversion Noise."""
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "2": {"class_type": "LoadImage", "inputs": {"image": content_image}},
        "3": {"class_type": "VAEEncode", "inputs": {"pixels": ["2", 0], "vae": ["1", 2]}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cubist painting", "clip": ["1", 1]}},
        "5": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
        "6": {"class_type": "BasicScheduler", "inputs": {"model": ["1", 0], "scheduler": "normal", "steps": 6,
                                                         "denoise": strength}},
        "7": {"class_type": "InST_InversionNoise", "inputs": {"model": ["1", 0], "positive": ["4", 0],
                                                              "sigmas": ["6", 0], "noise_seed": seed}},
        "8": {"class_type": "CFGGuider", "inputs": {"model": ["1", 0], "positive": ["4", 0], "negative": ["5", 0],
                                                    "cfg": 7.0}},
        "9": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "10": {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["7", 0], "guider": ["8", 0],
                                                                 "sampler": ["9", 0], "sigmas": ["6", 0],
                                                                 "latent_image": ["3", 0]}},
        "11": {"class_type": "VAEDecode", "inputs": {"samples": ["10", 0], "vae": ["1", 2]}},
        "12": {"class_type": "SaveImage", "inputs": {"images": ["11", 0], "filename_prefix": prefix}},
    }
