"""A learned InST style: one encoder per text encoder of the model (`InSTStyle.heads`, keyed as the
tokenizer keys them), what they were built for, and the image features they read."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from .. import host
from ..training_kit.errors import InputError
from ..training_kit.files import int_in_range
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
    def from_metadata(cls, metadata: dict[str, str], source: str, input_name: str = "style_name") -> StyleSpec:
        """The spec a style file states, every field checked for its type and range: a file is read
        as untrusted input (an error names `input_name`), and nothing is built from it unchecked."""
        fix = "Pick a file saved by the InST trainer or Save InST Style."
        if metadata.get("format") != "inst-style" or "spec" not in metadata:
            raise InputError(input_name, f"'{source}' is not an InST style file (no inst-style metadata).", fix)
        try:
            spec = json.loads(metadata["spec"])
        except json.JSONDecodeError as error:
            raise InputError(input_name, f"'{source}' has a spec that is not valid JSON ({error.msg}).", fix) from None
        if not isinstance(spec, dict):
            raise InputError(input_name, f"'{source}' has a spec that is not a JSON object.", fix)
        if metadata.get("format_version") == "1" and "heads" in spec:  # version 1 called the heads "heads"
            spec["attention_heads"] = spec.pop("heads")
        return cls.checked(spec, source, input_name, fix)

    @classmethod
    def checked(cls, spec: dict, source: str, input_name: str, fix: str) -> StyleSpec:
        """The spec, once every field has its type and a range a real style has (else an error on
        `input_name`)."""
        problem = _spec_problem(spec)
        if problem:
            raise InputError(input_name, f"'{source}' has an invalid spec: {problem}.", fix)
        return cls(**spec)


# The largest value a style file may state for each size (the largest real models' widths are 4096
# for text tokens and 1280 for image embeddings): a spec is checked against these before anything is
# built from it, so a file cannot make the loader allocate more than a real style needs.
MAX_WIDTH = 8192
MAX_VECTORS = 64
MAX_HEADS = 128


def _spec_problem(spec: dict) -> str | None:
    """What is wrong with a spec read from a file, or None."""
    fields = {f.name for f in dataclasses.fields(StyleSpec)}
    required = {f.name for f in dataclasses.fields(StyleSpec)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    if set(spec) - fields:
        return f"unknown field(s) {sorted(set(spec) - fields)}"
    if required - set(spec):
        return f"missing field(s) {sorted(required - set(spec))}"
    widths = spec["token_widths"]
    checks = {
        "family": isinstance(spec["family"], str),
        "token_widths": isinstance(widths, dict) and 0 < len(widths) <= 4 and all(
            isinstance(k, str) and int_in_range(v, 1, MAX_WIDTH) for k, v in widths.items()),
        "image_dim": int_in_range(spec["image_dim"], 1, MAX_WIDTH),
        "context": spec.get("context", CONTEXT_IMAGE_EMBED) in CONTEXTS,
        "context_dim": spec.get("context_dim") is None or int_in_range(spec["context_dim"], 1, MAX_WIDTH),
        "n_vectors": int_in_range(spec.get("n_vectors", 1), 1, MAX_VECTORS),
        "attention_heads": int_in_range(spec.get("attention_heads", 1), 1, MAX_HEADS),
        "dim_head": int_in_range(spec.get("dim_head", 1), 1, MAX_WIDTH),
        "dropout": isinstance(spec.get("dropout", 0.0), (int, float)) and 0 <= spec.get("dropout", 0.0) < 1,
        "training": isinstance(spec.get("training", {}), dict),
    }
    wrong = [name for name, ok in checks.items() if not ok]
    return f"field(s) {wrong} have the wrong type or an out-of-range value" if wrong else None


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
