"""InST styles on disk: `.safetensors` with the spec in the metadata, in models/inst_styles."""

from __future__ import annotations

from pathlib import Path

from safetensors import safe_open

from ..errors import InputError
from ..safe_files import atomic_save_safetensors
from .style import InSTStyle, StyleSpec

STYLE_FOLDER = "inst_styles"


def save_style(style: InSTStyle, path: Path) -> Path:
    return atomic_save_safetensors(style.state_dict(), path, style.spec.to_metadata())


def load_style(path: Path) -> InSTStyle:
    """Loads only `.safetensors` (no pickle); a file with missing or extra weights is refused."""
    if path.suffix != ".safetensors":
        raise InputError("style_name", f"'{path.name}' is not a .safetensors file.",
                         "Convert official InST embeddings.pt files with Import Official InST Style.")
    try:
        with safe_open(str(path), framework="pt") as f:
            spec = StyleSpec.from_metadata(f.metadata() or {}, path.name)
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except InputError:
        raise
    except Exception as e:  # safetensors reports corrupt headers with its own exception types
        raise InputError("style_name", f"'{path.name}' could not be read ({e}).", "Re-save or re-train it.") from None
    style = InSTStyle(spec)
    missing, unexpected = style.load_state_dict(tensors, strict=False)
    if missing or unexpected:
        raise InputError("style_name", f"'{path.name}' does not match its own spec (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]}).", "The file is damaged; re-train or re-save it.")
    return style
