"""Validation while training, in-process on the tiny SD1.5: rounds at the right steps, images saved
with the step in their names, CLIP-I scores, the best step, and no effect on training itself."""

import contextlib
import dataclasses

import numpy as np
import pytest
import torch
from images_for_tests import clip_i, painting_tensor, score_pixels, to_image_tensor
from PIL import Image

INST_FAST = dict(steps=3, resolution=64, learning_rate=1e-3)
SF_FAST = dict(steps=4, resolution=64, unet_lr=1e-3, rank=4, alpha=4.0)


@contextlib.contextmanager
def outputs_in(folder):
    """ComfyUI's output folder set to `folder` for a while."""
    import folder_paths

    previous = folder_paths.get_output_directory()
    folder_paths.set_output_directory(str(folder))
    try:
        yield folder
    finally:
        folder_paths.set_output_directory(previous)


@pytest.fixture
def output_folder(tmp_path):
    with outputs_in(tmp_path) as folder:
        yield folder


@pytest.fixture(scope="module")
def kit(pkg):
    from inst_styleforge.inst_core import training as inst
    from inst_styleforge.styleforge_core import datasets
    from inst_styleforge.styleforge_core import training as styleforge
    from inst_styleforge.training_kit import validation

    return inst, styleforge, datasets, validation


# Rounds at steps 0 and 2 of 3 and at the end: "before every n steps and at the end" (a round's images,
# one per prompt, are numbered per prompt: test_validation_e2e.py draws two).
INST_CHECKS = dict(prompts=("a house in the style of *",), every=2, steps=2, filename_prefix="checks/inst")


@pytest.fixture(scope="module")
def inst_runs(kit, sd15, clip_vision, tmp_path_factory):
    """(the output folder, a run without validation, two runs validating with INST_CHECKS): one InST
    config trained three times."""
    inst, _, _, validation = kit
    model, clip, vae = sd15
    config = inst.InSTTrainingConfig(**INST_FAST)
    with outputs_in(tmp_path_factory.mktemp("validated")) as folder, torch.inference_mode():
        plain = inst.train_style(model, clip, vae, clip_vision, [painting_tensor()], config)
        checked = [inst.train_style(model, clip, vae, clip_vision, [painting_tensor()], config,
                                    validation=validation.ValidationSettings(**INST_CHECKS)) for _ in range(2)]
    return folder, plain, checked


def test_inst_validates_before_every_n_steps_and_at_the_end_and_scores_against_the_painting(inst_runs, clip_vision):
    folder, _, (result, _) = inst_runs
    rounds = result.validation.rounds
    assert [r.step for r in rounds] == [0, 2, 3]
    assert [f.as_posix() for r in rounds for f in r.files] == [f"checks/inst_00001_step{s:06}_1.png"
                                                               for s in (0, 2, 3)]
    assert all((folder / f).is_file() for r in rounds for f in r.files)
    # the last round's score against the painting, as computed here from its saved images
    saved = [to_image_tensor(Image.open(folder / f)) for f in rounds[-1].files]
    assert rounds[-1].score == pytest.approx(clip_i(clip_vision, saved, [painting_tensor()]), abs=1e-5)
    assert result.validation.best().score == max(r.score for r in rounds)
    with Image.open(folder / rounds[-1].files[0]) as saved:
        assert saved.size == (64, 64)


def test_validating_changes_nothing_training_learns_and_repeats_its_images_in_new_files(inst_runs):
    """A run without validation and two with it: the same losses and style (and so the same seed gives
    the same style); the two validated runs draw the same images with the same scores into new files."""
    _, plain, checked = inst_runs
    for run in checked:
        assert run.losses == plain.losses
        for key, value in plain.trained.state_dict().items():
            assert torch.equal(value, run.trained.state_dict()[key]), key
    first, second = (run.validation.rounds for run in checked)
    assert [r.step for r in second] == [0, 2, 3] and first[0].files != second[0].files
    for a, b in zip(first, second):
        assert np.array_equal(np.asarray(a.images[0]), np.asarray(b.images[0]))
        assert a.score == b.score


def test_styleforge_validates_its_own_prompt_and_scores_only_with_clip_vision(kit, sd15, clip_vision, output_folder,
                                                                             styleforge_sets, monkeypatch):
    """StyleForge validates "[V] style" and scores against its StyleRef images only with a CLIP vision
    model. With the text encoder frozen, neither training nor a validation round loads it for training
    (its prompts were encoded before training; on FLUX.1 that keeps T5-XXL off the device)."""
    from inst_styleforge import host

    _, styleforge, datasets, validation = kit
    model, clip, vae = sd15
    loaded_for_training = []
    load_for_training = host.trainable.load_for_training

    def recording(model=None, clip=None):
        loaded_for_training.append(clip)
        return load_for_training(model, clip)

    monkeypatch.setattr(host.trainable, "load_for_training", recording)
    one_painting = datasets.from_batch(styleforge_sets.style.images[0])  # one reference to score against
    sets = dataclasses.replace(styleforge_sets, style=one_painting, backgrounds=None)
    config = styleforge.StyleForgeConfig(**dict(SF_FAST, steps=1))
    with torch.inference_mode():
        scored = styleforge.train_styleforge(model, clip, vae, sets, config, validation=validation.ValidationSettings(
            every=2, steps=2, filename_prefix="sf/scored", clip_vision=clip_vision))
        unscored = styleforge.train_styleforge(model, clip, vae, sets, config, validation=validation.ValidationSettings(
            every=2, steps=2, filename_prefix="sf/plain"))
    assert scored.validation.prompts == ("zwx style",)
    assert [r.step for r in scored.validation.rounds] == [0, 1]
    last = scored.validation.rounds[-1]  # scored against the StyleRef images
    saved = [to_image_tensor(Image.open(output_folder / f)) for f in last.files]
    assert last.score == pytest.approx(clip_i(clip_vision, saved, list(sets.style.images)), abs=1e-5)
    assert [(r.step, r.score) for r in unscored.validation.rounds] == [(0, None), (1, None)]
    assert scored.losses == unscored.losses
    assert "best" in scored.validation.summary() and "best" not in unscored.validation.summary()
    assert len(loaded_for_training) == 4 and set(loaded_for_training) == {None}  # per run: training, round 0


def test_loss_curve_draws_the_scores_and_marks_the_best_step(kit):
    from inst_styleforge.training_kit.loss_curve import axis_labels, loss_curve_image

    # scores that differ only in the fifth decimal get axis labels that differ (not '0.1674' at both ends)
    top, low = axis_labels(0.16741, 0.00003)
    assert top != low and float(top) == pytest.approx(0.16744) and float(low) == pytest.approx(0.16741)
    assert axis_labels(0.5, 0.2) == ("0.7000", "0.5000")

    losses = [1.0 / (i + 1) for i in range(20)]
    assert score_pixels(loss_curve_image(losses, "t")) == 0
    assert score_pixels(loss_curve_image(losses, "t", [(0, 0.5), (10, 0.7), (20, 0.6)])) > 50
