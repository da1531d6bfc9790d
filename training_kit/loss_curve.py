"""The loss-curve image both trainers output: raw losses and a moving average, robust to NaN and to a
constant loss (ComfyUI's own LossGraphNode divides by max - min and crashes on both)."""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image, ImageDraw

WIDTH, HEIGHT, MARGIN = 640, 360, 48
SMOOTHING_WINDOW = 20


def moving_average(values: list[float], window: int = SMOOTHING_WINDOW) -> list[float]:
    out, acc = [], []
    for v in values:
        acc.append(v)
        acc = acc[-window:]
        out.append(sum(acc) / len(acc))
    return out


def loss_curve_image(losses: list[float], title: str) -> torch.Tensor:
    """IMAGE tensor (1, H, W, 3) of the curve; non-finite values are left out and counted."""
    finite = [(i, v) for i, v in enumerate(losses) if math.isfinite(v)]
    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle([MARGIN, 8, WIDTH - 8, HEIGHT - MARGIN], outline="black")
    skipped = len(losses) - len(finite)
    caption = f"{title}: {len(losses)} steps" + (f", {skipped} non-finite skipped" if skipped else "")
    draw.text((MARGIN, HEIGHT - MARGIN + 20), caption, fill="black")
    if finite:
        lo = min(v for _, v in finite)
        hi = max(v for _, v in finite)
        span = hi - lo or 1.0
        steps = max(len(losses) - 1, 1)

        def point(i: int, v: float) -> tuple[float, float]:
            x = MARGIN + (WIDTH - 8 - MARGIN) * i / steps
            y = (HEIGHT - MARGIN) - (HEIGHT - MARGIN - 8) * (v - lo) / span
            return x, y

        raw = [point(i, v) for i, v in finite]
        smooth = [point(i, v) for (i, _), v in zip(finite, moving_average([v for _, v in finite]))]
        if len(raw) > 1:
            draw.line(raw, fill=(170, 190, 230), width=1)
            draw.line(smooth, fill=(20, 60, 180), width=2)
        draw.text((4, 8), f"{hi:.4g}", fill="black")
        draw.text((4, HEIGHT - MARGIN - 12), f"{lo:.4g}", fill="black")
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)[None]
