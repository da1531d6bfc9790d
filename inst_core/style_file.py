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
        expected = InSTStyle(spec).state_dict()
    require_layout(expected, tensors, f"'{path.name}' does not match its own spec", input_name,
                   "The file is damaged; re-train or re-save it.")
    style = InSTStyle(spec)
    style.load_state_dict(tensors)
    style.path = path
    return style


def require_layout(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor], problem: str, input_name: str,
                   fix: str) -> None:
    """Refuse tensors whose names or shapes are not the ones a module laid out on the meta device
    expects: checked before the module is built, so a file cannot make the loader allocate anything."""
    expected_shapes = {name: tuple(t.shape) for name, t in expected.items()}
    found_shapes = {name: tuple(t.shape) for name, t in found.items()}
    if found_shapes != expected_shapes:
        missing = sorted(set(expected_shapes) - set(found_shapes))
        unexpected = sorted(set(found_shapes) - set(expected_shapes))
        reshaped = sorted(n for n in set(expected_shapes) & set(found_shapes) if expected_shapes[n] != found_shapes[n])
        raise InputError(input_name, f"{problem} (missing {missing[:3]}, unexpected {unexpected[:3]}, other shapes "
                         f"{reshaped[:3]}).", fix)
