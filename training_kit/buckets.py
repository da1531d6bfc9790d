"""Aspect-ratio buckets: each image trains at a size of about the training resolution's area whose aspect
ratio is closest to its own, instead of a square crop that cuts a portrait's head or a landscape's
sides off.

The buckets follow kohya's sd-scripts: every side a multiple of BUCKET_STEP pixels, from half the
resolution to twice it, as wide as the area allows (the resolution itself a multiple of BUCKET_STEP,
which the trainer checks). An image is resized to cover its bucket and cropped along one side only, by
what its aspect ratio and the bucket's differ; a square image's bucket is the plain square crop.
"""

from __future__ import annotations

import math

import torch

from .images import SampleSize, cover_crop

# Every side a multiple of 64 px: 8 latent pixels, which every SD family's UNet halves three times
# without a remainder (kohya's bucket_reso_steps default).
BUCKET_STEP = 64


def _down(value: float) -> int:
    return int(value // BUCKET_STEP * BUCKET_STEP)


def bucket_sizes(resolution: int) -> list[tuple[int, int]]:
    """(height, width) of every bucket for `resolution`: sides multiples of BUCKET_STEP between
    resolution / 2 and 2 x resolution, each as large as the area resolution^2 allows, square included."""
    smallest, largest = max(BUCKET_STEP, _down(resolution / 2)), max(BUCKET_STEP, _down(2 * resolution))
    square = max(BUCKET_STEP, _down(resolution))
    sizes = {(square, square)}
    for width in range(smallest, largest + 1, BUCKET_STEP):
        height = min(largest, _down(resolution * resolution / width))
        if height >= smallest:
            sizes |= {(height, width), (width, height)}
    return sorted(sizes)


def bucket_of(height: int, width: int, resolution: int) -> tuple[int, int]:
    """The bucket whose aspect ratio is closest to height:width (in log ratio, so 2:1 and 1:2 are as far
    from square); between two as close, the larger."""
    aspect = math.log(width / height)
    return min(bucket_sizes(resolution), key=lambda s: (abs(math.log(s[1] / s[0]) - aspect), -s[0] * s[1]))


def bucket_crop(image: torch.Tensor, resolution: int, generator: torch.Generator | None) -> SampleSize:
    """The crop of `image` (resized to cover it) at its own bucket."""
    return cover_crop(image, bucket_of(*image.shape[1:3], resolution), generator)
