"""The loaded models as ComfyUI holds them: family, text-encoder widths, devices and dtypes, and
ComfyUI's own loaders."""

from __future__ import annotations

from pathlib import Path

import comfy.clip_vision
import comfy.sd
import torch
from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel


def model_family(model) -> str:
    """ComfyUI's name for the loaded model's architecture ("SD15", "SDXL", "Flux", ...)."""
    return type(model.model.model_config).__name__


def has_unet(model) -> bool:
    """Whether the diffusion model is ComfyUI's Stable Diffusion UNet (not a DiT)."""
    return isinstance(model.model.diffusion_model, UNetModel)


def unet_context_width(model) -> int:
    return int(model.model.model_config.unet_config["context_dim"])


def text_encoder_widths(clip) -> dict[str, int | None]:
    """Token-embedding width of each text encoder, keyed as ComfyUI's tokenizer keys them ("l", "g",
    "h"); None for an encoder not laid out as ComfyUI's CLIP text models are."""
    widths = {}
    for key in clip.tokenize("").keys():
        encoder = getattr(clip.cond_stage_model, f"clip_{key}", None)
        widths[key] = None if encoder is None else int(encoder.transformer.get_input_embeddings().weight.shape[1])
    return widths


def compute_device(model) -> torch.device:
    return model.load_device


def compute_dtype(model) -> torch.dtype:
    """The dtype the UNet computes in: ComfyUI casts its inputs to it (the weights' dtype, or the
    manual-cast dtype when the weights are stored in one the device cannot compute in)."""
    return model.model.manual_cast_dtype or model.model.get_dtype()


def load_checkpoint(path: Path) -> tuple:
    """(MODEL, CLIP, VAE) by ComfyUI's own checkpoint loader, as CheckpointLoaderSimple loads them."""
    model, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(str(path), output_vae=True, output_clip=True)
    return model, clip, vae


def load_clip_vision(path: Path):
    """CLIP_VISION by ComfyUI's own loader, as CLIPVisionLoader loads it."""
    return comfy.clip_vision.load(str(path))
