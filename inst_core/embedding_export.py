"""A painting's style token as a standard textual-inversion embedding (what `embedding:NAME` loads).

SD1.x/SD2.x: {"emb_params": (n, width)}; SDXL: {"clip_l": (n, 768), "clip_g": (n, 1280)}, the keys
ComfyUI's tokenizers (and kohya, A1111) look for.
"""

from __future__ import annotations

import json

import torch

from .style import ImageFeatures, InSTStyle


def embedding_tensors(style: InSTStyle, features: ImageFeatures) -> dict[str, torch.Tensor]:
    vectors = {key: v[0] for key, v in style.vectors(features).items()}
    if len(vectors) == 1:
        return {"emb_params": next(iter(vectors.values()))}
    return {f"clip_{key}": v for key, v in vectors.items()}


def embedding_metadata(style: InSTStyle) -> dict[str, str]:
    return {"source": "InST style token", "base_model": style.spec.family,
            "n_vectors": str(style.spec.n_vectors), "style_spec": json.dumps(style.spec.training, default=str)[:4000]}
