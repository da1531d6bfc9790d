"""The loss-curve image both trainers output: raw losses and a moving average, robust to NaN and to a
constant loss (ComfyUI's own LossGraphNode divides by max - min and crashes on both), and the
validation scores on their own axis at the right, with the best step marked; a legend says which
line is which."""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image, ImageDraw

WIDTH, HEIGHT, MARGIN = 640, 360, 48
SMOOTHING_WINDOW = 20
LOSS_RAW, LOSS_SMOOTH, SCORE = (170, 190, 230), (20, 60, 180), (220, 100, 20)


def moving_average(values: list[float], window: int = SMOOTHING_WINDOW) -> list[float]:
    out, acc = [], []
    for v in values:
        acc.append(v)
        acc = acc[-window:]
        out.append(sum(acc) / len(acc))
    return out


def axis_labels(lo: float, span: float) -> tuple[str, str]:
    """(top, bottom) labels of an axis from `lo` to `lo + span`, with as many decimals as it takes for the
    two to differ: validation scores often differ only in the fifth decimal."""
    decimals = max(4, 2 - math.floor(math.log10(span)))
    return f"{lo + span:.{decimals}f}", f"{lo:.{decimals}f}"


def loss_curve_image(losses: list[float], title: str, scores: list[tuple[int, float]] = (),
                     start_step: int = 0) -> torch.Tensor:
    """IMAGE tensor (1, H, W, 3) of the curve; non-finite values are left out and counted. Loss i is
    step start_step + i + 1; `scores` are (step, validation score) pairs."""
    finite = [(start_step + i + 1, v) for i, v in enumerate(losses) if math.isfinite(v)]
    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    right, bottom = WIDTH - MARGIN, HEIGHT - MARGIN
    draw.rectangle([MARGIN, 8, right, bottom], outline="black")
    skipped = len(losses) - len(finite)
    caption = f"{title}: {len(losses)} steps" + (f", {skipped} non-finite skipped" if skipped else "")
    draw.text((MARGIN, bottom + 20), caption, fill="black")
    first, last = start_step, max(start_step + len(losses), start_step + 1)

    def x(step: int) -> float:
        return MARGIN + (right - MARGIN) * (step - first) / (last - first)

    def axis(values: list[float]) -> tuple[float, float]:
        lo, hi = min(values), max(values)
        return lo, (hi - lo) or 1.0

    def y(value: float, lo: float, span: float) -> float:
        return bottom - (bottom - 8) * (value - lo) / span

    legend = f"loss (light blue) and its mean over {SMOOTHING_WINDOW} steps (blue), left axis"
    if finite:
        lo, span = axis([v for _, v in finite])
        raw = [(x(s), y(v, lo, span)) for s, v in finite]
        smooth = [(x(s), y(v, lo, span)) for (s, _), v in zip(finite, moving_average([v for _, v in finite]))]
        if len(raw) > 1:
            draw.line(raw, fill=LOSS_RAW, width=1)
            draw.line(smooth, fill=LOSS_SMOOTH, width=2)
        top, low = axis_labels(lo, span)
        draw.text((4, 8), top, fill=LOSS_SMOOTH)
        draw.text((4, bottom - 12), low, fill=LOSS_SMOOTH)
    if scores:
        lo, span = axis([v for _, v in scores])
        points = [(x(s), y(v, lo, span)) for s, v in scores]
        if len(points) > 1:
            draw.line(points, fill=SCORE, width=2)
        for px, py in points:
            draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=SCORE)
        best_step, best = max(scores, key=lambda item: item[1])
        bx, by = x(best_step), y(best, lo, span)
        draw.ellipse([bx - 7, by - 7, bx + 7, by + 7], outline=SCORE, width=2)
        top, low = axis_labels(lo, span)
        draw.text((right + 2, 8), top, fill=SCORE)
        draw.text((right + 2, bottom - 12), low, fill=SCORE)
        draw.text((MARGIN + 70, bottom + 6), f"CLIP-I (orange, right axis), best at step {best_step}: "
                  f"{best:.{len(top.split('.')[1])}f}", fill="black")
    draw.text((MARGIN, bottom + 6), f"step {first}", fill="black")
    draw.text((right - 60, bottom + 6), f"step {last}", fill="black")
    draw.text((MARGIN, bottom + 32), legend, fill="black")
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0)[None]
