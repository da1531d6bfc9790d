"""InST styles on disk: `.safetensors` with the spec in the metadata, in models/inst_styles."""

from __future__ import annotations

from pathlib import Path

from ..training_kit.errors import InputError
from ..training_kit.files import atomic_save_safetensors, read_safetensors
from .style import InSTStyle, StyleSpec

STYLE_FOLDER = "inst_styles"


def save_style(style: InSTStyle, path: Path) -> Path:
    return atomic_save_safetensors(style.state_dict(), path, style.spec.to_metadata())


def load_style(path: Path, input_name: str = "style_name") -> InSTStyle:
    """Loads only `.safetensors` (no pickle); a file with missing or extra weights is refused."""
    tensors, metadata = read_safetensors(path, input_name, "Pick a style saved by the InST trainer; convert "
                                         "official InST embeddings.pt files with Import Official InST Style.")
    style = InSTStyle(StyleSpec.from_metadata(metadata, path.name))
    missing, unexpected = style.load_state_dict(tensors, strict=False)
    if missing or unexpected:
        raise InputError(input_name, f"'{path.name}' does not match its own spec (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}).", "The file is damaged; re-train or re-save it.")
    style.path = path
    return style
