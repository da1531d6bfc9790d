"""Validation while training, in-process on the tiny SD1.5: rounds at the right steps, images saved
with the step in their names, CLIP-I scores, the best step, and no effect on training itself."""

import re

import numpy as np
import pytest
import torch
from images_for_tests import painting_tensor, to_image_tensor
from PIL import Image

from devhost.example_inputs import painting, person

INST_FAST = dict(steps=4, resolution=64, learning_rate=1e-3)
SF_FAST = dict(steps=4, resolution=64, unet_lr=1e-3, rank=4, alpha=4.0)


@pytest.fixture
def output_folder(tmp_path):
    import folder_paths

    previous = folder_paths.get_output_directory()
    folder_paths.set_output_directory(str(tmp_path))
    try:
        yield tmp_path
    finally:
        folder_paths.set_output_directory(previous)


@pytest.fixture(scope="module")
def kit(pkg):
    from inst_styleforge.inst_core import training as inst
    from inst_styleforge.styleforge_core import datasets
    from inst_styleforge.styleforge_core import training as styleforge
    from inst_styleforge.training_kit import validation

    return inst, styleforge, datasets, validation


def _files(folder, pattern):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.png") if re.search(pattern, p.name))


def test_inst_validates_before_every_n_steps_and_at_the_end_and_scores_against_the_painting(
        kit, sd15, clip_vision, output_folder):
    inst, _, _, validation = kit
    model, clip, vae = sd15
    settings = validation.ValidationSettings(prompts=("a house in the style of *", "*"), every=3, steps=2,
                                             filename_prefix="checks/inst")
    with torch.inference_mode():
        result = inst.train_style(model, clip, vae, clip_vision, [painting_tensor()],
                                  inst.InSTTrainingConfig(**INST_FAST), validation=settings)
    rounds = result.validation.rounds
    assert [r.step for r in rounds] == [0, 3, 4]
    assert _files(output_folder, "step") == [f"checks/inst_00001_step{s:06}_{k}.png" for s in (0, 3, 4)
                                             for k in (1, 2)]
    assert all(-1.0 <= r.score <= 1.0 for r in rounds)
    assert result.validation.best().score == max(r.score for r in rounds)
    with Image.open(output_folder / rounds[-1].files[0]) as saved:
        assert saved.size == (64, 64)


def test_validating_does_not_change_what_training_learns(kit, sd15, clip_vision, output_folder):
    inst, _, _, validation = kit
    model, clip, vae = sd15
    config = inst.InSTTrainingConfig(**INST_FAST)
    with torch.inference_mode():
        plain = inst.train_style(model, clip, vae, clip_vision, [painting_tensor()], config)
        checked = inst.train_style(model, clip, vae, clip_vision, [painting_tensor()], config,
                                   validation=validation.ValidationSettings(every=2, steps=2))
    assert plain.losses == checked.losses
    for key, value in plain.trained.state_dict().items():
        assert torch.equal(value, checked.trained.state_dict()[key]), key


def test_same_seeds_give_the_same_validation_images_and_runs_do_not_overwrite_each_other(
        kit, sd15, clip_vision, output_folder):
    inst, _, _, validation = kit
    model, clip, vae = sd15
    settings = validation.ValidationSettings(every=100, steps=2)
    with torch.inference_mode():
        runs = [inst.train_style(model, clip, vae, clip_vision, [painting_tensor()],
                                 inst.InSTTrainingConfig(**dict(INST_FAST, steps=1)), validation=settings)
                for _ in range(2)]
    first, second = (run.validation.rounds for run in runs)
    assert first[0].files != second[0].files
    for a, b in zip(first, second):
        assert np.array_equal(np.asarray(a.images[0]), np.asarray(b.images[0]))
        assert a.score == b.score


def test_inst_validation_prompt_without_the_placeholder_is_refused_by_name(kit, sd15, clip_vision, output_folder):
    inst, _, _, validation = kit
    from inst_styleforge.training_kit.errors import InputError

    model, clip, vae = sd15
    settings = validation.ValidationSettings(prompts=("a house by the sea",))
    with pytest.raises(InputError, match="Input 'prompts'.*no '\\*'"), torch.inference_mode():
        inst.train_style(model, clip, vae, clip_vision, [painting_tensor()], inst.InSTTrainingConfig(**INST_FAST),
                         validation=settings)
    assert _files(output_folder, "") == [], "nothing is written"


def test_styleforge_validates_its_own_prompt_and_scores_only_with_clip_vision(kit, sd15, clip_vision, output_folder):
    _, styleforge, datasets, validation = kit
    model, clip, vae = sd15
    style = datasets.from_batch(torch.cat([to_image_tensor(painting(s, (64, 64))) for s in range(3)]))
    aux = datasets.from_batch(torch.cat([to_image_tensor(person(10 + s)) for s in range(4)]))
    sets = styleforge.TrainingSets(style, aux)
    config = styleforge.StyleForgeConfig(**SF_FAST)
    with torch.inference_mode():
        scored = styleforge.train_styleforge(model, clip, vae, sets, config, validation=validation.ValidationSettings(
            every=2, steps=2, filename_prefix="sf/scored", clip_vision=clip_vision))
        unscored = styleforge.train_styleforge(model, clip, vae, sets, config, validation=validation.ValidationSettings(
            every=4, steps=2, filename_prefix="sf/plain"))
    assert scored.validation.prompts == ("zwx style",)
    assert [(r.step, r.score is not None) for r in scored.validation.rounds] == [(0, True), (2, True), (4, True)]
    assert [(r.step, r.score) for r in unscored.validation.rounds] == [(0, None), (4, None)]
    assert scored.losses == unscored.losses
    assert "best" in scored.validation.summary() and "best" not in unscored.validation.summary()


def test_loss_curve_draws_the_scores_and_marks_the_best_step(kit):
    from inst_styleforge.training_kit.loss_curve import SCORE, loss_curve_image

    losses = [1.0 / (i + 1) for i in range(20)]

    def score_pixels(image: torch.Tensor) -> int:
        array = (image[0].numpy() * 255).round().astype(int)
        return int((np.abs(array - np.array(SCORE)).sum(-1) < 10).sum())

    assert score_pixels(loss_curve_image(losses, "t")) == 0
    assert score_pixels(loss_curve_image(losses, "t", [(0, 0.5), (10, 0.7), (20, 0.6)])) > 50
