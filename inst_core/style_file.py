"""InST styles on disk: `.safetensors` with the spec in the metadata, in models/inst_styles."""

from __future__ import annotations

from pathlib import Path

import torch

from ..training_kit.errors import InputError
from ..training_kit.files import atomic_save_safetensors, read_safetensors
from .style import InSTStyle, StyleSpec

STYLE_FOLDER = "inst_styles"


def save_style(style: InSTStyle, path: Path) -> Path:
    return atomic_save_safetensors(style.state_dict(), path, style.spec.to_metadata())


def load_style(path: Path, input_name: str = "style_name") -> InSTStyle:
    """Loads only `.safetensors` (no pickle). The file is untrusted: its spec is checked, and the
    encoder it describes is laid out on the meta device (no memory) and compared with the file's
    tensors, names and shapes, before it is built; a file that does not match is refused."""
    tensors, metadata = read_safetensors(path, input_name, "Pick a style saved by the InST trainer; convert "
                                         "official InST embeddings.pt files with Import Official InST Style.")
    spec = StyleSpec.from_metadata(metadata, path.name, input_name)
    with torch.device("meta"):
        expected = {name: tuple(t.shape) for name, t in InSTStyle(spec).state_dict().items()}
    found = {name: tuple(t.shape) for name, t in tensors.items()}
    if found != expected:
        missing, unexpected = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
        reshaped = sorted(n for n in set(expected) & set(found) if expected[n] != found[n])
        raise InputError(input_name, f"'{path.name}' does not match its own spec (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}, other shapes {reshaped[:3]}).",
                         "The file is damaged; re-train or re-save it.")
    style = InSTStyle(spec)
    style.load_state_dict(tensors)
    style.path = path
    return style
