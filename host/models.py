"""The loaded models as ComfyUI holds them: family, text-encoder widths, devices and dtypes, and
ComfyUI's own loaders."""

from __future__ import annotations

from pathlib import Path

import comfy.clip_vision
import comfy.sd
import comfy.text_encoders.flux
import comfy.text_encoders.sd3_clip
import torch
from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

T5_XXL_WIDTH = 4096


def model_family(model) -> str:
    """ComfyUI's name for the loaded model's architecture ("SD15", "SDXL", "Flux", ...)."""
    return type(model.model.model_config).__name__


def has_unet(model) -> bool:
    """Whether the diffusion model is ComfyUI's Stable Diffusion UNet (not a DiT)."""
    return isinstance(model.model.diffusion_model, UNetModel)


def text_context_width(model) -> int:
    """The width of the text features the diffusion model takes: a UNet's cross-attention context, an
    MMDiT's context embedder input, Flux's text input."""
    config = model.model.model_config.unet_config
    if "context_dim" in config:
        return int(config["context_dim"])
    if "context_in_dim" in config:
        return int(config["context_in_dim"])
    return int(config["context_embedder_config"]["params"]["in_features"])


def pooled_input_width(model) -> int | None:
    """The width of the pooled text vector a DiT takes (SD3.5: CLIP-L and CLIP-G's 2048; FLUX.1: CLIP-L's
    768); None for a UNet (SDXL's ADM input holds its size embeddings beside the pooled vector)."""
    if has_unet(model):
        return None
    config = model.model.model_config.unet_config
    width = config.get("vec_in_dim", config.get("adm_in_channels"))
    return None if width is None else int(width)


def _encoder_slot(clip, key: str) -> str | None:
    """The attribute of ComfyUI's text-encoder model that holds the encoder of tokenizer key `key`
    ("clip_l" for "l", "t5xxl" for "t5xxl"), None if it has none."""
    return next((name for name in (f"clip_{key}", key) if hasattr(clip.cond_stage_model, name)), None)


def text_encoder_widths(clip) -> dict[str, int | None]:
    """Token-embedding width of each text encoder that is loaded, keyed as ComfyUI's tokenizer keys
    them ("l", "g", "h", "t5xxl"); None for an encoder not laid out as ComfyUI's text models are. An
    encoder the family has but this CLIP lacks (SD3.5 without T5) is left out."""
    widths = {}
    for key in clip.tokenize("").keys():
        slot = _encoder_slot(clip, key)
        if slot is None:
            widths[key] = None
            continue
        encoder = getattr(clip.cond_stage_model, slot)
        if encoder is not None:
            widths[key] = int(encoder.transformer.get_input_embeddings().weight.shape[1])
    return widths


def has_flux_text_encoders(clip) -> bool:
    """Whether the CLIP is ComfyUI's FLUX.1 text encoder pair (T5-XXL's tokens, CLIP-L's pooled vector)."""
    return isinstance(clip.cond_stage_model, comfy.text_encoders.flux.FluxClipModel)


def text_feature_width(clip) -> int:
    """The width of the text features the CLIP gives: its encoders' token features side by side, except
    ComfyUI's SD3 text encoder, which pads CLIP-L and CLIP-G's (768 + 1280) to T5-XXL's 4096 and puts
    T5's tokens after theirs, and its Flux text encoder, whose features are T5-XXL's alone (CLIP-L gives
    only the pooled vector)."""
    if isinstance(clip.cond_stage_model, (comfy.text_encoders.sd3_clip.SD3ClipModel,
                                          comfy.text_encoders.flux.FluxClipModel)):
        return T5_XXL_WIDTH
    return sum(width or 0 for width in text_encoder_widths(clip).values())


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
