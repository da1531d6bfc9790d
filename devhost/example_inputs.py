"""Procedural example images: small ones the tests write, and the ones the package ships.

A "painting" of brush-like strokes in a fixed palette, a "content photo" of simple shapes, and image
sets for StyleForge: StyleRef people and backgrounds, and Aux digital paintings. `scale` draws the
same picture larger (strokes, shapes and sizes all scaled), for the examples users see.

    .devhost/venv/bin/python -m devhost.example_inputs   # rewrites example_inputs/ (shipped, small JPEGs)
"""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

PAINTING_PALETTE = [(32, 52, 112), (236, 184, 52), (220, 92, 40), (244, 236, 212), (40, 120, 96)]


def painting(seed: int, size: tuple[int, int] = (96, 80), palette=PAINTING_PALETTE, scale: int = 1) -> Image.Image:
    rng = random.Random(seed)
    width, height = size[0] * scale, size[1] * scale
    image = Image.new("RGB", (width, height), palette[0])
    draw = ImageDraw.Draw(image)
    for _ in range(60 * scale * scale):
        x, y = rng.randrange(width), rng.randrange(height)
        dx, dy = rng.randint(-30, 30) * scale, rng.randint(-12, 12) * scale
        draw.line([(x, y), (x + dx, y + dy)], fill=rng.choice(palette), width=rng.randint(2, 7) * scale)
    return image.filter(ImageFilter.SMOOTH)


def content_photo(seed: int, size: tuple[int, int] = (64, 64), scale: int = 1) -> Image.Image:
    rng = random.Random(seed)
    width, height = size[0] * scale, size[1] * scale
    image = Image.new("RGB", (width, height), (150, 190, 230))
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, height * 2 // 3, width, height], fill=(90, 140, 70))
    cx, cy, r = rng.randint(16, 48) * scale, rng.randint(16, 36) * scale, rng.randint(8, 14) * scale
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(200, 60, 60))
    return image


def person(seed: int, palette=PAINTING_PALETTE, scale: int = 1) -> Image.Image:
    """A stick-figure 'portrait' in the painting's palette (StyleRef people)."""
    rng = random.Random(seed)
    image = painting(seed, (72, 72), palette, scale)
    draw = ImageDraw.Draw(image)
    cx = rng.randint(28, 44)
    box = [(cx - 10, 10, cx + 10, 30), (cx - 12, 32, cx + 12, 70)]
    draw.ellipse([v * scale for v in box[0]], fill=palette[1])
    draw.rectangle([v * scale for v in box[1]], fill=palette[2])
    return image


AUX_PALETTE = [(60, 60, 60), (200, 170, 150), (90, 110, 160), (230, 230, 230), (120, 70, 50)]
# The StyleForge sets, by folder: how each image is drawn from its index and scale.
SETS = {"styleref": lambda i, s: painting(100 + i, scale=s) if i % 2 else person(100 + i, scale=s),
        "people": lambda i, s: person(200 + i, scale=s),
        "backgrounds": lambda i, s: painting(300 + i, scale=s),
        "aux": lambda i, s: person(400 + i, AUX_PALETTE, s)}
SHIPPED_SCALE, SHIPPED_PER_SET, SHIPPED_QUALITY = 5, 6, 85  # 360-480 px JPEGs, about 1 MB in all


def write_shipped_examples(folder: Path) -> None:
    """The example inputs the package ships (`example_inputs/`), which the package copies into a
    user's ComfyUI input folder at start-up so the bundled workflows find them."""
    folder.mkdir(parents=True, exist_ok=True)
    painting(0, scale=SHIPPED_SCALE).save(folder / "painting.jpg", quality=SHIPPED_QUALITY)
    content_photo(0, scale=SHIPPED_SCALE + 1).save(folder / "content_photo.jpg", quality=SHIPPED_QUALITY)
    for name, make in SETS.items():
        (folder / name).mkdir(exist_ok=True)
        for i in range(SHIPPED_PER_SET):
            make(i, SHIPPED_SCALE).save(folder / name / f"{name}_{i}.jpg", quality=SHIPPED_QUALITY)


def write_examples(input_dir: Path) -> dict[str, Path]:
    """Write every example input under `input_dir`; returns what each workflow refers to."""
    input_dir.mkdir(parents=True, exist_ok=True)
    paths = {"painting": input_dir / "example_painting.png", "content": input_dir / "example_content.png"}
    painting(0).save(paths["painting"])
    content_photo(0).save(paths["content"])
    for name, make in SETS.items():
        folder = input_dir / "styleforge_example" / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(4):
            make(i, 1).save(folder / f"{name}_{i}.png")
        paths[name] = folder
    return paths


if __name__ == "__main__":
    from .paths import REPO_ROOT

    write_shipped_examples(REPO_ROOT / "example_inputs")
    print(f"wrote {REPO_ROOT / 'example_inputs'}")
