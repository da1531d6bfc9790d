"""Procedural example images for the bundled workflows (nothing downloaded, nothing committed).

A "painting" of brush-like strokes in a fixed palette, a "content photo" of simple shapes, and small
image sets for StyleForge: StyleRef people and backgrounds, and Aux digital paintings.
"""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

PAINTING_PALETTE = [(32, 52, 112), (236, 184, 52), (220, 92, 40), (244, 236, 212), (40, 120, 96)]


def painting(seed: int, size: tuple[int, int] = (96, 80), palette=PAINTING_PALETTE) -> Image.Image:
    rng = random.Random(seed)
    image = Image.new("RGB", size, palette[0])
    draw = ImageDraw.Draw(image)
    for _ in range(60):
        x, y = rng.randrange(size[0]), rng.randrange(size[1])
        dx, dy = rng.randint(-30, 30), rng.randint(-12, 12)
        draw.line([(x, y), (x + dx, y + dy)], fill=rng.choice(palette), width=rng.randint(2, 7))
    return image.filter(ImageFilter.SMOOTH)


def content_photo(seed: int, size: tuple[int, int] = (64, 64)) -> Image.Image:
    rng = random.Random(seed)
    image = Image.new("RGB", size, (150, 190, 230))
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, size[1] * 2 // 3, size[0], size[1]], fill=(90, 140, 70))
    cx, cy, r = rng.randint(16, 48), rng.randint(16, 36), rng.randint(8, 14)
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(200, 60, 60))
    return image


def person(seed: int, palette=PAINTING_PALETTE) -> Image.Image:
    """A stick-figure 'portrait' in the painting's palette (StyleRef people)."""
    rng = random.Random(seed)
    image = painting(seed, (72, 72), palette)
    draw = ImageDraw.Draw(image)
    cx = rng.randint(28, 44)
    draw.ellipse([cx - 10, 10, cx + 10, 30], fill=palette[1])
    draw.rectangle([cx - 12, 32, cx + 12, 70], fill=palette[2])
    return image


def write_examples(input_dir: Path) -> dict[str, Path]:
    """Write every example input under `input_dir`; returns what each workflow refers to."""
    input_dir.mkdir(parents=True, exist_ok=True)
    paths = {"painting": input_dir / "example_painting.png", "content": input_dir / "example_content.png"}
    painting(0).save(paths["painting"])
    content_photo(0).save(paths["content"])
    aux_palette = [(60, 60, 60), (200, 170, 150), (90, 110, 160), (230, 230, 230), (120, 70, 50)]
    sets = {"styleref": lambda i: painting(100 + i) if i % 2 else person(100 + i),
            "people": lambda i: person(200 + i),
            "backgrounds": lambda i: painting(300 + i),
            "aux": lambda i: person(400 + i, aux_palette)}
    for name, make in sets.items():
        folder = input_dir / "styleforge_example" / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(4):
            make(i).save(folder / f"{name}_{i}.png")
        paths[name] = folder
    return paths
