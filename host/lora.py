"""LoRA: ComfyUI's key maps, the layers they name, and stock LoRA loading."""

from __future__ import annotations

from collections.abc import Iterator

import comfy.lora
import comfy.sd
import torch


def unet_lora_key_map(model) -> dict[str, str]:
    """ComfyUI's map of every LoRA name it accepts for the diffusion model -> the weight key it patches,
    for the names that patch a whole weight (for SD3, ComfyUI also maps diffusers' separate q, k and v
    names onto slices of the fused qkv weight)."""
    return {name: key for name, key in comfy.lora.model_lora_keys_unet(model.model, {}).items() if isinstance(key, str)}


def text_encoder_lora_key_map(clip) -> dict[str, str]:
    """ComfyUI's map of every LoRA name it accepts for the text encoder(s) -> the weight key it patches."""
    return comfy.lora.model_lora_keys_clip(clip.cond_stage_model, {})


def unet_layers(model) -> Iterator[tuple[str, torch.nn.Module]]:
    """(weight-key path, layer) of every module of the UNet, paths as in the LoRA key maps."""
    return model.model.named_modules()


def text_encoder_layer(clip, path: str) -> torch.nn.Module:
    return clip.cond_stage_model.get_submodule(path)


def apply_lora(model, clip, lora_tensors: dict[str, torch.Tensor], strength: float = 1.0) -> tuple:
    """(MODEL, CLIP) with a kohya LoRA applied exactly as stock LoraLoader applies it."""
    return comfy.sd.load_lora_for_models(model, clip, lora_tensors, strength, strength)
