"""SDXL training passes each sample's own size conditioning (original size, crop corner, target size;
Podell et al. 2023, arXiv 2307.01952, sec. 2.2), as SDXL trainers do, not the defaults: checked on
what the UNet actually receives during a run of each trainer on the SDXL-family fixture, decoded
with the published sinusoidal embedding computed here."""

import contextlib
import math

import pytest
import torch
from images_for_tests import painting_tensor, to_image_tensor

from devhost.example_inputs import person

POOLED_WIDTH = 1280  # CLIP-G's pooled output comes first in SDXL's vector input
RESOLUTION = 64


def _sinusoid(value: float, dim: int = 256) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
    return torch.cat([torch.cos(value * freqs), torch.sin(value * freqs)])


def _size_part(values: tuple[int, ...]) -> torch.Tensor:
    return torch.cat([_sinusoid(v) for v in values])


@contextlib.contextmanager
def _captured_vector_inputs(model):
    """Every `y` (SDXL's pooled + size vector) the UNet is called with."""
    seen = []

    def hook(_module, _args, kwargs):
        seen.extend(kwargs["y"].detach().float().cpu())

    handle = model.model.diffusion_model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield seen
    finally:
        handle.remove()


def _decoded(y: torch.Tensor, candidates: list[tuple[int, ...]]) -> tuple[int, ...]:
    """Which candidate (original h, w, crop top, left, target h, w) this `y` encodes."""
    distances = [float((y[POOLED_WIDTH:] - _size_part(c)).abs().max()) for c in candidates]
    best = min(range(len(candidates)), key=distances.__getitem__)
    assert distances[best] < 1e-4, f"y encodes none of the expected sizes (closest: {candidates[best]})"
    return candidates[best]


def test_inst_on_sdxl_conditions_on_the_paintings_original_size(pkg, sdxl, clip_vision):
    from inst_styleforge.inst_core import training

    model, clip, vae = sdxl
    painting = painting_tensor()  # 96 x 80 pixels, resized whole to 64 x 64
    config = training.InSTTrainingConfig(steps=1, resolution=RESOLUTION, learning_rate=1e-3)
    with torch.inference_mode(), _captured_vector_inputs(model) as seen:
        training.train_style(model, clip, vae, clip_vision, [painting], config)
    expected = (80, 96, 0, 0, RESOLUTION, RESOLUTION)
    assert seen and {_decoded(y, [expected, (RESOLUTION, RESOLUTION, 0, 0, RESOLUTION, RESOLUTION)])
                     for y in seen} == {expected}


@pytest.mark.parametrize("passes", ["one batch", "separate"])
def test_styleforge_on_sdxl_conditions_each_sample_on_its_own_crop(pkg, sdxl, passes):
    from inst_styleforge.styleforge_core import datasets, training

    model, clip, vae = sdxl
    wide = datasets.from_batch(torch.cat([painting_tensor(s) for s in range(2)]))  # 96 x 80: random crops
    square = datasets.from_batch(torch.cat([to_image_tensor(person(10 + s)) for s in range(4)]))  # 72 x 72
    config = training.StyleForgeConfig(steps=4, resolution=RESOLUTION, rank=4, alpha=4.0, unet_lr=1e-3,
                                       passes=passes)
    # A 96 x 80 image resized to 77 x 64 leaves 13 columns to crop from, plain or mirrored.
    wide_crops = [(80, 96, 0, left, RESOLUTION, RESOLUTION) for left in range(14)]
    square_crop = (72, 72, 0, 0, RESOLUTION, RESOLUTION)
    with torch.inference_mode(), _captured_vector_inputs(model) as seen:
        training.train_styleforge(model, clip, vae, training.TrainingSets(wide, square), config)
    decoded = [_decoded(y, [*wide_crops, square_crop]) for y in seen]
    assert square_crop in decoded, "the Aux samples are conditioned on their own size"
    assert len({d for d in decoded if d != square_crop}) > 1, "each StyleRef crop has its own corner"
