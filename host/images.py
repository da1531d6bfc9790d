"""Images through ComfyUI's VAE and CLIP vision models."""

from __future__ import annotations

import torch

# The most pixels one VAE call encodes for training (one 512 px view, four 256 px ones). ComfyUI sizes
# its encode batches by free memory, which on the CPU is the free RAM: a whole image set in one call
# set a StyleForge run's peak above its steps' (bench/styleforge_bench.py reports both peaks).
VAE_ENCODE_PIXELS = 512 * 512


def vae_encode(vae, image: torch.Tensor) -> torch.Tensor:
    """IMAGE (B,H,W,C in [0,1]) -> VAE latent, at most `VAE_ENCODE_PIXELS` per call."""
    per_call = max(1, VAE_ENCODE_PIXELS // (image.shape[1] * image.shape[2]))
    return torch.cat([vae.encode(image[i:i + per_call, ..., :3]) for i in range(0, len(image), per_call)])


def vae_decode(vae, latent: torch.Tensor) -> torch.Tensor:
    return vae.decode(latent)


def clip_vision_encode(clip_vision, image: torch.Tensor):
    """CLIP_VISION_OUTPUT for IMAGE, centre-cropped as stock CLIPVisionEncode does by default."""
    return clip_vision.encode_image(image[..., :3], crop=True)


def clip_vision_embeddings(output) -> tuple[torch.Tensor, torch.Tensor]:
    """(projected image embedding (B, D), penultimate hidden states (B, N, W)) of a CLIP_VISION_OUTPUT."""
    return output["image_embeds"], output["penultimate_hidden_states"]
