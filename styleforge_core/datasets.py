"""StyleForge image sets: StyleRef (or Multi's people / backgrounds) and Aux images, with captions.

A set comes from a folder under ComfyUI's input directory, from an IMAGE batch of the graph, or both.
Files are read the way a user expects an image viewer to show them (EXIF orientation applied,
transparency flattened onto white, greyscale made RGB). Files that are not readable images are
skipped and counted, and the count is part of the set's summary so the user sees it; a set with no
readable image is refused.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import UnidentifiedImageError

from .. import host
from ..training_kit.errors import InputError
from ..training_kit.files import NONE_CHOSEN, inside
from ..training_kit.images import image_sha256, read_image, require_image

CAPTION_SUFFIX = ".txt"


@dataclass(frozen=True)
class ImageSet:
    """Images (each a (1, H, W, 3) IMAGE in [0, 1], sizes may differ) and their captions ("" = none)."""

    images: tuple[torch.Tensor, ...]
    captions: tuple[str, ...]
    source: str
    skipped: tuple[str, ...] = ()  # files that are not readable images
    refused: tuple[str, ...] = ()  # images read but not usable, each with the reason

    def __len__(self) -> int:
        return len(self.images)

    def sha256(self) -> str:
        """One hash of the pixels and captions, so a LoRA's metadata records which data made it."""
        digest = hashlib.sha256()
        for image, caption in zip(self.images, self.captions):
            digest.update(image_sha256(image).encode() + caption.encode())
        return digest.hexdigest()

    def summary(self) -> str:
        captioned = sum(1 for c in self.captions if c)
        text = f"{len(self)} images from {self.source} ({captioned} with captions)"
        left_out = left_out_text(self.skipped, self.refused)
        return f"{text}; {left_out}" if left_out else text


def _listed(names: tuple[str, ...]) -> str:
    return ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")


def left_out_text(skipped: tuple[str, ...], refused: tuple[str, ...]) -> str:
    """What a folder had that is not in the set: unreadable files, and images refused (e.g. too small)."""
    parts = [f"skipped {len(skipped)} unreadable or non-image files: {_listed(skipped)}"] if skipped else []
    if refused:
        parts.append(f"refused {len(refused)} images: {_listed(refused)}")
    return "; ".join(parts)


def _caption(path: Path, root: Path) -> str:
    caption_file = path.with_suffix(CAPTION_SUFFIX)
    if not caption_file.is_file() or not _within(root, caption_file):
        return ""
    return caption_file.read_text(encoding="utf-8", errors="replace").strip()


def _within(root: Path, file: Path) -> bool:
    """Whether `file`, links followed, is inside `root`: what is read from ComfyUI's input folder stays
    there, for files as for folders (`inside`)."""
    return root in file.resolve().parents


def _folder(folder: str, input_name: str) -> Path:
    root = host.files.input_directory()
    relative = folder.strip().replace("\\", "/").strip("/")
    path = inside(root, Path(relative), input_name)
    if not path.is_dir():
        raise InputError(input_name, f"folder '{relative}' does not exist under ComfyUI's input directory "
                         f"({root}).", "Create it and put the images there, or fix the name.")
    return path


def load_folder(folder: str, input_name: str = "folder") -> ImageSet:
    """Every readable image directly in `folder` (relative to ComfyUI's input directory), sorted by
    name, with the caption from a .txt file of the same name when there is one. A file that links
    outside the input directory is refused and counted, as a folder that does is refused."""
    path = _folder(folder, input_name)
    root = host.files.input_directory().resolve()
    images, captions, skipped, refused = [], [], [], []
    for file in sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")):
        if file.suffix.lower() == CAPTION_SUFFIX:
            continue
        if not _within(root, file):
            refused.append(f"'{file.name}': links outside ComfyUI's input folder")
            continue
        try:
            image = read_image(file)
        except (UnidentifiedImageError, OSError, ValueError):
            skipped.append(file.name)
            continue
        try:
            images.append(require_image(image, file.name))
        except InputError as error:  # readable, but too small (or otherwise unusable): say why
            refused.append(str(error).removeprefix("Input "))
            continue
        captions.append(_caption(file, root))
    if not images:
        left_out = left_out_text(tuple(skipped), tuple(refused))
        raise InputError(input_name, f"folder '{folder}' has no usable images{f' ({left_out})' if left_out else ''}.",
                         "Add PNG, JPEG or WebP images to it.")
    return ImageSet(tuple(images), tuple(captions), f"input/{path.relative_to(host.files.input_directory())}",
                    tuple(skipped), tuple(refused))


def from_batch(batch: torch.Tensor, input_name: str = "images") -> ImageSet:
    """An IMAGE batch of the graph as a set (no captions)."""
    images = require_image(batch, input_name)
    return ImageSet(tuple(images[i:i + 1] for i in range(images.shape[0])), ("",) * images.shape[0],
                    f"an IMAGE batch of {images.shape[0]}")


def combine(sets: list[ImageSet]) -> ImageSet:
    return ImageSet(tuple(i for s in sets for i in s.images), tuple(c for s in sets for c in s.captions),
                    " + ".join(s.source for s in sets), tuple(f for s in sets for f in s.skipped),
                    tuple(f for s in sets for f in s.refused))


def image_set(folder: str, batch: torch.Tensor | None) -> ImageSet:
    """The set a dataset node describes: the folder's images, the batch's, or both. `folder` is one of
    the listed folders or a typed path under the input directory; empty or NONE_CHOSEN: none."""
    named = folder.strip() not in ("", NONE_CHOSEN)
    sets = ([load_folder(folder)] if named else []) + ([from_batch(batch)] if batch is not None else [])
    if not sets:
        raise InputError("folder", "names no folder and no images are connected.",
                         "Pick a folder of images under ComfyUI's input directory, or connect an IMAGE batch.")
    return combine(sets)


def bound_prompt(prompt: str, caption: str) -> str:
    """The training prompt of one image: the prompt its set is bound to ("zwx style", or "style" for Aux)
    and its caption."""
    return f"{prompt}, {caption}" if caption else prompt
