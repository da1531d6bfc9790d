"""A learned InST style: one encoder per text encoder of the model (`InSTStyle.heads`, keyed as the
tokenizer keys them), what they were built for, and the image features they read."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from .. import host
from ..training_kit.errors import InputError
from .style_encoder import StyleEncoder

# What the encoder attends over: the paper's projected image embedding alone, or also CLIP vision's
# patch tokens (penultimate layer) as keys and values.
CONTEXT_IMAGE_EMBED = "image_embed"
CONTEXT_PATCH_TOKENS = "patch_tokens"
CONTEXTS = (CONTEXT_IMAGE_EMBED, CONTEXT_PATCH_TOKENS)
DEFAULT_PLACEHOLDER = "*"
FORMAT_VERSION = "2"


@dataclass(frozen=True)
class StyleSpec:
    """Everything needed to rebuild the encoder and to check it against the loaded models."""

    family: str  # ComfyUI model family the style was trained on ("SD15", "SDXL", ...)
    token_widths: dict[str, int]  # tokenizer key -> token width ("l": 768)
    image_dim: int  # CLIP vision image_embeds width (768 for ViT-L/14)
    context: str = CONTEXT_IMAGE_EMBED
    context_dim: int | None = None  # patch-token width when context is patch tokens
    n_vectors: int = 1
    attention_heads: int = 8
    dim_head: int = 64
    dropout: float = 0.05
    training: dict = field(default_factory=dict, compare=False)  # steps, lr, seed, painting hashes...

    def to_metadata(self) -> dict[str, str]:
        spec = json.dumps(asdict(self), sort_keys=True)
        return {"format": "inst-style", "format_version": FORMAT_VERSION, "spec": spec}

    @classmethod
    def from_metadata(cls, metadata: dict[str, str], source: str) -> StyleSpec:
        if metadata.get("format") != "inst-style" or "spec" not in metadata:
            raise InputError("style_name", f"'{source}' is not an InST style file (no inst-style metadata).",
                             "Pick a file saved by the InST trainer or Save InST Style.")
        spec = json.loads(metadata["spec"])
        if metadata.get("format_version") == "1":  # version 1 called the attention heads "heads"
            spec["attention_heads"] = spec.pop("heads")
        return cls(**spec)


@dataclass
class ImageFeatures:
    """What the style encoder reads from one painting's CLIP vision output."""

    embed: torch.Tensor  # (B, image_dim), L2-normalised as HF CLIPModel.image_embeds
    patch_tokens: torch.Tensor  # (B, N, width) penultimate hidden states

    @classmethod
    def from_clip_vision_output(cls, output) -> ImageFeatures:
        embed, patch_tokens = host.images.clip_vision_embeddings(output)
        embed = embed.float()
        return cls(embed / embed.norm(dim=-1, keepdim=True), patch_tokens.float())


class InSTStyle(nn.Module):
    def __init__(self, spec: StyleSpec):
        super().__init__()
        self.spec = spec
        self.path: Path | None = None  # the file it was loaded from, where a continued run finds its optimizer
        self.heads = nn.ModuleDict({
            key: StyleEncoder(spec.image_dim, width, spec.n_vectors, spec.attention_heads, spec.dim_head, spec.dropout,
                              spec.context_dim if spec.context == CONTEXT_PATCH_TOKENS else None)
            for key, width in spec.token_widths.items()})

    def forward(self, features: ImageFeatures) -> dict[str, torch.Tensor]:
        """Token vectors per text encoder: key -> (B, n_vectors, width)."""
        context = features.patch_tokens if self.spec.context == CONTEXT_PATCH_TOKENS else None
        return {key: head(features.embed, context) for key, head in self.heads.items()}

    def check_features(self, features: ImageFeatures, input_name: str) -> None:
        if features.embed.shape[-1] != self.spec.image_dim:
            raise InputError(input_name, f"gives {features.embed.shape[-1]}-d image embeddings but this style was "
                             f"trained on {self.spec.image_dim}-d ones.",
                             "Use the CLIP vision model the style was trained with (ViT-L/14 for 768).")
        if self.spec.context == CONTEXT_PATCH_TOKENS and features.patch_tokens.shape[-1] != self.spec.context_dim:
            raise InputError(input_name, f"gives {features.patch_tokens.shape[-1]}-d patch tokens but this style "
                             f"reads {self.spec.context_dim}-d ones.", "Use the CLIP vision model it was trained with.")

    def check_text_encoders(self, widths: dict[str, int], input_name: str = "clip") -> None:
        if widths != self.spec.token_widths:
            raise InputError(input_name, f"has text encoders {widths} but this style was trained for "
                             f"{self.spec.family} with {self.spec.token_widths}.",
                             f"Use a {self.spec.family} checkpoint's CLIP, or train the style on this model.")

    @torch.no_grad()
    def vectors(self, features: ImageFeatures) -> dict[str, torch.Tensor]:
        """Deterministic token vectors (dropout off) for conditioning and export."""
        was_training = self.training
        self.eval()
        try:
            device = next(self.parameters()).device
            moved = ImageFeatures(features.embed.to(device), features.patch_tokens.to(device))
            return {k: v.float().cpu() for k, v in self(moved).items()}
        finally:
            self.train(was_training)
