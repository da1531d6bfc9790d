"""A painting's style token as a standard textual-inversion embedding (what `embedding:NAME` loads).

SD1.x/SD2.x: {"emb_params": (n, width)}; SDXL, SD3.5: {"clip_l": (n, 768), "clip_g": (n, 1280)}, the keys
ComfyUI's tokenizers (and kohya, A1111) look for.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from ..training_kit.errors import InputError
from ..training_kit.files import atomic_save_safetensors, safe_relative_name
from .style import ImageFeatures, InSTStyle

# Stock CLIP Text Encode splits a prompt at spaces and reads "(", ")", ":" and "," as weighting
# syntax, so `embedding:NAME` finds only a NAME without them.
UNUSABLE_IN_PROMPTS = re.compile(r"[\s(),:]")


def embedding_name(name: str, input_name: str) -> Path:
    """The file name (relative to models/embeddings) of an embedding stock prompts can use by name."""
    if UNUSABLE_IN_PROMPTS.search(name.strip()):
        raise InputError(input_name, f"'{name.strip()}' has a space or one of ( ) , : and stock CLIP Text Encode "
                         "reads embedding:NAME only up to those.", "Use letters, digits, '_', '-' or '.', "
                         "e.g. 'my_style'.")
    return safe_relative_name(name, input_name)  # strips the suffix, keeps the name inside the folder


def embedding_tensors(style: InSTStyle, features: ImageFeatures) -> dict[str, torch.Tensor]:
    vectors = {key: v[0] for key, v in style.vectors(features).items()}
    if len(vectors) == 1:
        return {"emb_params": next(iter(vectors.values()))}
    return {f"clip_{key}": v for key, v in vectors.items()}


def save_embedding(style: InSTStyle, features: ImageFeatures, path: Path) -> Path:
    """The stock textual-inversion file of the painting's token, written atomically."""
    return atomic_save_safetensors(embedding_tensors(style, features), path, embedding_metadata(style))


def embedding_metadata(style: InSTStyle) -> dict[str, str]:
    return {"source": "InST style token", "base_model": style.spec.family,
            "n_vectors": str(style.spec.n_vectors), "style_spec": json.dumps(style.spec.training, default=str)[:4000]}
