"""IMAGE tensors (B, H, W, C in [0, 1], ComfyUI's layout): reading files, checks and the resizes both trainers
use."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from .errors import InputError

MIN_TRAINING_SIDE = 8  # smaller images cannot give a VAE latent
TRANSPARENT_BACKGROUND = (255, 255, 255)


def require_image(image: torch.Tensor, input_name: str) -> torch.Tensor:
    """RGB float IMAGE batch, at least MIN_TRAINING_SIDE pixels a side, with finite values."""
    if not isinstance(image, torch.Tensor) or image.ndim != 4 or image.shape[0] == 0:
        raise InputError(input_name, "is empty or not an image batch.", "Connect a Load Image node.")
    h, w, c = image.shape[1:]
    if min(h, w) < MIN_TRAINING_SIDE:
        raise InputError(input_name, f"is {w}x{h} pixels; at least {MIN_TRAINING_SIDE}x{MIN_TRAINING_SIDE} is needed.",
                         "Use a larger image.")
    if c not in (1, 3, 4):
        raise InputError(input_name, f"has {c} channels.", "Use an RGB, RGBA or greyscale image.")
    image = image.float()
    if not torch.isfinite(image).all():
        raise InputError(input_name, "contains NaN or infinite pixels.", "Re-load the image.")
    return image.expand(-1, -1, -1, 3) if c == 1 else image[..., :3]


def resize_exact(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resize without keeping the aspect ratio (InST's 512x512 training crop does this)."""
    bchw = image.movedim(-1, 1)
    return F.interpolate(bchw, size=(height, width), mode="bicubic", antialias=True,
                         align_corners=False).clamp(0, 1).movedim(1, -1)


@dataclass(frozen=True)
class SampleSize:
    """Where a training sample's pixels came from, (height, width) pairs: the image's size before
    resizing, the size it was resized to, the crop's top-left corner in the resized image, and the
    size trained at. SDXL is conditioned on original size, crop corner and target size (Podell et al.
    2023, arXiv 2307.01952, sec. 2.2); its trainers pass each sample's own values, and stock sampling
    passes the generated size with no crop, so a sample trained this way matches what inference asks for."""

    original: tuple[int, int]
    resized: tuple[int, int]
    crop_top_left: tuple[int, int]
    target: tuple[int, int]

    def flipped(self) -> SampleSize:
        """The same crop of the mirrored image: its left edge measured from the other side."""
        top, left = self.crop_top_left
        return replace(self, crop_top_left=(top, self.resized[1] - left - self.target[1]))


def exact_size(image: torch.Tensor, height: int, width: int) -> SampleSize:
    """The geometry of `resize_exact` (no crop)."""
    return SampleSize(tuple(image.shape[1:3]), (height, width), (0, 0), (height, width))


def cover_crop(image: torch.Tensor, target: tuple[int, int], generator: torch.Generator | None) -> SampleSize:
    """Resized, aspect kept, to just cover `target` (height, width), then a (random, or centre without a
    generator) crop of that size: a square target gives the usual short-side resize and square crop."""
    h, w = image.shape[1:3]
    th, tw = target
    scale = max(th / h, tw / w)
    nh, nw = max(th, round(h * scale)), max(tw, round(w * scale))
    if generator is None:
        top, left = (nh - th) // 2, (nw - tw) // 2
    else:
        top = int(torch.randint(0, nh - th + 1, (1,), generator=generator))
        left = int(torch.randint(0, nw - tw + 1, (1,), generator=generator))
    return SampleSize((h, w), (nh, nw), (top, left), (th, tw))


def cropped(image: torch.Tensor, geometry: SampleSize) -> torch.Tensor:
    """The pixels `geometry` describes: `image` resized, then cropped."""
    (top, left), (th, tw) = geometry.crop_top_left, geometry.target
    return resize_exact(image, *geometry.resized)[:, top:top + th, left:left + tw]


def resize_and_crop(image: torch.Tensor, size: int, generator: torch.Generator | None) -> torch.Tensor:
    """The pixels of a square `cover_crop` (for callers that do not need its geometry)."""
    return cropped(image, cover_crop(image, (size, size), generator))


def image_sha256(image: torch.Tensor) -> str:
    """Hash of the 8-bit pixels, so a style or LoRA records which images made it."""
    pixels = (image.clamp(0, 1) * 255).round().to(torch.uint8).cpu().contiguous().numpy()
    return hashlib.sha256(pixels.tobytes() + str(pixels.shape).encode()).hexdigest()


def read_image(path: Path) -> torch.Tensor:
    """(1, H, W, 3) float IMAGE of an image file: EXIF rotation applied, alpha flattened onto white."""
    with Image.open(path) as opened:
        image = ImageOps.exif_transpose(opened)
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            rgba = image.convert("RGBA")
            image = Image.new("RGBA", rgba.size, TRANSPARENT_BACKGROUND + (255,))
            image.alpha_composite(rgba)
        array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array.copy())[None]


def from_pil(image: Image.Image) -> torch.Tensor:
    """IMAGE (1, H, W, 3) in [0, 1] of an RGB picture."""
    return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0)[None]


def to_pil(image: torch.Tensor) -> Image.Image:
    """The first picture of an IMAGE, as 8-bit RGB."""
    array = (image[0, ..., :3].clamp(0, 1) * 255).round().byte().cpu().numpy()
    return Image.fromarray(array)
