"""StyleForge's aspect-ratio buckets: the bucket sizes, which bucket an image gets, and training on a set of
portrait, square and landscape images on SD1.5 and SDXL without square crops (each view's latent at its
image's bucket), reproducibly from the seed."""

import dataclasses
import math

import pytest
import torch
from images_for_tests import to_image_tensor

from devhost.example_inputs import painting

RESOLUTION = 128  # buckets (height x width): 64x192, 64x256, 128x128, 192x64, 256x64
# (width, height) of the set's images, and the bucket (height, width) each must train at: 1:3 and 3:1
# are buckets of their own at 128 px, so nothing is cropped off them.
IMAGES = {(64, 192): (192, 64), (96, 96): (128, 128), (192, 64): (64, 192)}
LATENT_SCALE = 8  # pixels per latent pixel of the SD VAEs


@pytest.fixture(scope="module")
def buckets(pkg):
    from inst_styleforge.training_kit import buckets

    return buckets


@pytest.mark.parametrize("resolution", [512, 1024])
def test_buckets_have_sides_in_steps_of_64_and_about_the_area_of_the_resolutions_square(buckets, resolution):
    sizes = buckets.bucket_sizes(resolution)
    assert (resolution, resolution) in sizes
    for height, width in sizes:
        assert height % 64 == 0 and width % 64 == 0
        assert resolution / 2 <= min(height, width) and max(height, width) <= 2 * resolution
        assert 0.8 * resolution**2 <= height * width <= resolution**2
        assert (width, height) in sizes  # every portrait bucket has its landscape twin


def test_each_image_gets_the_bucket_closest_to_its_aspect_ratio(buckets):
    # worked by hand at 512 px: 3:2 is nearer 640:384 (5:3) than 576:448 (9:7); 4:1 has a bucket of its own
    assert buckets.bucket_of(512, 768, 512) == (384, 640)
    assert buckets.bucket_of(768, 512, 512) == (640, 384)
    assert buckets.bucket_of(1000, 1000, 512) == (512, 512)
    assert buckets.bucket_of(256, 1024, 512) == (256, 1024)
    assert buckets.bucket_of(480, 400, 64) == (64, 64)  # at 64 px the only bucket is the square


def _mixed_aspect_set(datasets):
    images = [to_image_tensor(painting(seed, size)) for seed, size in enumerate(IMAGES)]
    return datasets.combine([datasets.from_batch(image) for image in images])


def _config(training):
    return training.StyleForgeConfig(steps=1, resolution=RESOLUTION, unet_lr=1e-3, rank=4, alpha=4.0,
                                     aspect_buckets=True, batch_size=2, passes="one batch", min_aux_images=1)


def _sets(datasets, training):
    aux = datasets.from_batch(to_image_tensor(painting(9, (64, 64))))  # square: its own bucket, another batch
    return training.TrainingSets(_mixed_aspect_set(datasets), aux)


@pytest.mark.usefixtures("tiny_models")  # built (in a fresh clone) at setup, not timed as this test's call
@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_a_mixed_aspect_set_trains_at_its_buckets_without_square_crops(pkg, request, family):
    from inst_styleforge.styleforge_core import datasets, training

    model, clip, vae = request.getfixturevalue(family)
    sets, config = _sets(datasets, training), _config(training)
    with torch.inference_mode():
        encoded = training.encode_set(model, vae, sets.style, "zwx style", config, torch.Generator().manual_seed(0))
    assert encoded.views_per_image == 2  # plain and flipped
    for index, ((width, height), bucket) in enumerate(IMAGES.items()):
        for view in (2 * index, 2 * index + 1):
            size = encoded.sizes[view]
            assert size.original == (height, width) and size.target == bucket
            assert size.resized == bucket and size.crop_top_left == (0, 0)  # the whole picture, nothing cut
            assert tuple(encoded.latents[view].shape[1:]) == (bucket[0] // LATENT_SCALE, bucket[1] // LATENT_SCALE)
    for seed in range(10):  # a batch: views of one bucket only, each once (here its image, plain and flipped)
        picked = training.draw(model, encoded, dataclasses.replace(config, batch_size=4), seed)
        assert len({size.target for size in picked.sizes}) == 1 and len(picked.sizes) == 2
        assert len(torch.unique(picked.latents.flatten(1), dim=0)) == 2
    with torch.inference_mode():
        result = training.train_styleforge(model, clip, vae, sets, config)
    assert math.isfinite(result.eval_after) and result.eval_after != result.eval_before  # it trained


def test_a_resolution_that_is_not_a_multiple_of_the_bucket_step_is_refused_with_buckets(pkg):
    from inst_styleforge.styleforge_core import datasets, training
    from inst_styleforge.training_kit.errors import InputError

    config = dataclasses.replace(_config(training), resolution=96)
    with pytest.raises(InputError, match="Input 'resolution': is 96, but with aspect_buckets every side is a "
                                         "multiple of 64 px"):
        training.check_inputs(config, _sets(datasets, training))
    training.check_inputs(dataclasses.replace(config, aspect_buckets=False), _sets(datasets, training))


def test_the_same_seed_trains_the_same_lora_from_a_mixed_aspect_set(pkg, sd15):
    from inst_styleforge.styleforge_core import datasets, training

    model, clip, vae = sd15
    sets, config = _sets(datasets, training), _config(training)
    with torch.inference_mode():
        first, second = (training.train_styleforge(model, clip, vae, sets, config).trained.tensors for _ in range(2))
    assert first.keys() == second.keys()
    for key, tensor in first.items():
        assert torch.equal(tensor, second[key]), key
