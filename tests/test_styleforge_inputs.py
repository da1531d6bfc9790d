"""StyleForge bad inputs: each gives an InputError naming the input and the fix."""

import contextlib
import json
import re

import pytest
import torch
from images_for_tests import to_image_tensor
from locked_folders import immutable
from PIL import Image

from devhost.example_inputs import painting, person

FAST = dict(steps=1, resolution=64, rank=4, alpha=4.0)


@pytest.fixture(scope="module")
def sf(pkg):
    from inst_styleforge.styleforge_core import datasets, training
    from inst_styleforge.training_kit.errors import InputError

    return datasets, training, InputError


@pytest.fixture
def input_folder(pkg):
    """A fresh folder under ComfyUI's input directory; yields (absolute path, name relative to input/)."""
    import shutil
    import uuid

    name = f"styleforge_test_{uuid.uuid4().hex[:8]}"
    folder = pkg.host.files.input_directory() / name
    folder.mkdir(parents=True)
    yield folder, name
    shutil.rmtree(folder)


def _batch(images) -> torch.Tensor:
    return torch.cat([to_image_tensor(i) for i in images])


@pytest.fixture(scope="module")
def sets(sf):
    datasets, training, _ = sf
    style = datasets.from_batch(_batch([painting(s, (64, 64)) for s in range(2)]))
    aux = datasets.from_batch(_batch([person(s) for s in range(4)]))
    return training.TrainingSets(style, aux, datasets.from_batch(_batch([painting(9, (64, 64))])))


def test_missing_and_empty_folders_are_refused(sf, input_folder):
    datasets, _, InputError = sf
    folder, name = input_folder
    with pytest.raises(InputError, match="'folder'.*'no_such_folder' does not exist"):
        datasets.load_folder("no_such_folder")
    with pytest.raises(InputError, match="'folder'.*has no usable images"):
        datasets.load_folder(name)
    from inst_styleforge.training_kit.files import NONE_CHOSEN

    for no_folder in ("", NONE_CHOSEN):
        with pytest.raises(InputError, match="'folder'.*names no folder and no images are connected"):
            datasets.image_set(no_folder, None)


def test_unreadable_files_are_skipped_and_counted(sf, input_folder):
    datasets, _, InputError = sf
    folder, name = input_folder
    (folder / "broken.png").write_bytes(b"not a png")
    (folder / "notes.md").write_text("hello")
    with pytest.raises(InputError, match="no usable images.*skipped 2 unreadable or non-image files"):
        datasets.load_folder(name)
    painting(0).save(folder / "a.png")
    (folder / "a.txt").write_text("a woman in red\n")
    image_set = datasets.load_folder(name)
    assert len(image_set) == 1 and image_set.captions == ("a woman in red",)
    assert "skipped 2 unreadable or non-image files: broken.png, notes.md" in image_set.summary()


def test_exif_orientation_transparency_and_greyscale_become_upright_rgb(sf, input_folder):
    datasets = sf[0]
    folder, name = input_folder
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    Image.new("RGB", (40, 20), (200, 10, 10)).save(folder / "rotated.jpg", exif=exif)
    Image.new("RGBA", (16, 16), (0, 0, 255, 0)).save(folder / "transparent.png")
    Image.new("L", (16, 16), 128).save(folder / "grey.png")
    images = dict(zip(sorted(["rotated.jpg", "transparent.png", "grey.png"]), datasets.load_folder(name).images))
    assert images["rotated.jpg"].shape == (1, 40, 20, 3)
    assert torch.allclose(images["transparent.png"], torch.ones(1, 16, 16, 3))  # transparent -> white
    assert images["grey.png"].shape == (1, 16, 16, 3)


def _check(training, sets, **overrides):
    training.check_inputs(training.StyleForgeConfig(**{**FAST, **overrides}), sets)


def test_multi_needs_backgrounds_and_two_different_tokens(sf, sets):
    _, training, InputError = sf
    single = training.TrainingSets(sets.style, sets.aux)
    with pytest.raises(InputError, match="'backgrounds'.*needs a background set"):
        _check(training, single, method="Multi")
    with pytest.raises(InputError, match="'background_token'.*same as token"):
        _check(training, sets, method="Multi", token="zwx", background_token="ZWX")
    with pytest.raises(InputError, match="'backgrounds'.*Single-StyleForge has one StyleRef set"):
        _check(training, sets, method="Single")
    _check(training, sets, method="Multi")


def test_aux_set_is_required_unless_lambda_is_zero(sf, sets):
    _, training, InputError = sf
    no_aux = training.TrainingSets(sets.style)
    with pytest.raises(InputError, match="'aux'.*no Aux set is connected.*set aux_weight to 0"):
        _check(training, no_aux)
    with pytest.raises(InputError, match="'aux'.*has 4 images; at least min_aux_images=15"):
        _check(training, training.TrainingSets(sets.style, sets.aux), min_aux_images=15)
    _check(training, no_aux, aux_weight=0.0)


def test_rank_larger_than_a_layer_is_refused(sf, sd15, sets):
    _, training, InputError = sf
    model, clip, vae = sd15
    config = training.StyleForgeConfig(**{**FAST, "rank": 400})
    with torch.inference_mode(), pytest.raises(InputError, match="'rank'.*400 is larger than layer .* allows "
                                                                 r"\(320.*at most 320"):
        training.train_styleforge(model, clip, vae, training.TrainingSets(sets.style, sets.aux), config)


def test_resume_from_another_model_family_is_refused(sf, sets):
    _, training, InputError = sf
    from inst_styleforge.styleforge_core.lora_file import StyleForgeLoRA

    sdxl = StyleForgeLoRA({}, {"base_model_family": "SDXL", "steps": 10, "rank": 4, "alpha": 4.0,
                                "include_conv": False, "train_text_encoder": False})
    config = training.StyleForgeConfig(**{**FAST, "steps": 20})
    with pytest.raises(InputError, match="'resume_from'.*trained on a SDXL model.*connected is SD15"):
        training.resumed_config(config, sdxl, "SD15")


def test_a_file_without_styleforge_metadata_cannot_be_resumed(sf, tmp_path):
    InputError = sf[2]
    from inst_styleforge.styleforge_core.lora_file import load_lora
    from safetensors.torch import save_file

    path = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(1)}, str(path), metadata={"ss_network_dim": json.dumps(4)})
    with pytest.raises(InputError, match="'resume_from'.*not a StyleForge LoRA"):
        load_lora(path, "resume_from")


def test_nan_loss_stops_training_with_a_clear_message(sf, sd15, sets, monkeypatch):
    _, training, InputError = sf
    from inst_styleforge.training_kit.input_rules import Range

    # a learning rate far above any the node allows is the quickest way to a non-finite loss (on a GPU,
    # fp16 overflow gets there within the range)
    monkeypatch.setitem(training.RANGES, "unet_lr", Range(0.0, 1e30))
    model, clip, vae = sd15
    config = training.StyleForgeConfig(**{**FAST, "steps": 6, "unet_lr": 1e30})
    with torch.inference_mode(), pytest.raises(InputError, match="'unet_lr'.*loss became"):
        training.train_styleforge(model, clip, vae, training.TrainingSets(sets.style, sets.aux), config)


def test_lora_files_that_lie_are_refused_by_name_before_training(sf, sd15, sets, tmp_path):
    """resume_from is untrusted: metadata of the wrong type or missing, tensors shaped otherwise than
    the rank says, or a LoRA of the other method each give an InputError on resume_from."""
    _, training, InputError = sf
    from inst_styleforge.styleforge_core.lora_file import load_lora, save_lora
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    model, clip, vae = sd15
    two_sets = training.TrainingSets(sets.style, sets.aux)
    with torch.inference_mode():
        trained = training.train_styleforge(model, clip, vae, two_sets, training.StyleForgeConfig(**FAST)).trained
    good = save_lora(trained, tmp_path / "good.safetensors", "fp32")
    with safe_open(str(good), framework="pt") as file:
        header = file.metadata()

    def lying(tensors=None, **metadata) -> object:
        path = tmp_path / "lying.safetensors"
        values = {k: v for k, v in {**header, **metadata}.items() if v is not None}
        save_file(tensors or load_file(good), str(path), metadata=values)
        return path

    def resume(path, method="Single"):
        config = training.StyleForgeConfig(**{**FAST, "steps": 2, "method": method})
        sets_for = two_sets if method == "Single" else training.TrainingSets(sets.style, sets.aux, sets.backgrounds)
        with torch.inference_mode():
            training.train_styleforge(model, clip, vae, sets_for, config, resume=load_lora(path, "resume_from"))

    for metadata, wrong in (({"steps": "abc"}, "['steps']"), ({"train_text_encoder": None}, "['train_text_encoder']"),
                            ({"base_model_family": None}, "['base_model_family']")):
        with pytest.raises(InputError, match=rf"^Input 'resume_from': 'lying.safetensors' has missing or invalid "
                                             rf"metadata \[{wrong[2:-2]!r}\]"):
            load_lora(lying(**metadata), "resume_from")
    down = next(k for k in load_file(good) if k.endswith(".lora_down.weight"))
    transposed = {**load_file(good), down: load_file(good)[down].T.contiguous()}
    for path in (lying(transposed), lying(rank="64")):
        with pytest.raises(InputError, match=r"^Input 'resume_from': holds lora_.* of shape .* but rank"):
            resume(path)
    with pytest.raises(InputError, match="^Input 'resume_from': is a Single-StyleForge LoRA, but this is the "
                                         "Multi-StyleForge trainer"):
        resume(good, method="Multi")


def test_image_files_linked_from_outside_the_input_folder_are_refused_and_counted(sf, input_folder, tmp_path):
    datasets, _, _ = sf
    folder, name = input_folder
    painting(1, (64, 64)).save(folder / "a.png")
    painting(2, (64, 64)).save(tmp_path / "outside.png")
    (tmp_path / "outside.txt").write_text("a caption from outside")
    (folder / "b.png").symlink_to(tmp_path / "outside.png")
    (folder / "c.png").symlink_to("/etc/passwd")
    (folder / "a.txt").symlink_to(tmp_path / "outside.txt")
    painting(3, (64, 64)).save(folder / "d.png")
    (folder / "e.png").symlink_to(folder / "d.png")  # a link inside the input folder is read
    loaded = datasets.load_folder(name)
    assert len(loaded) == 3 and loaded.captions == ("", "", "")
    assert loaded.refused == ("'b.png': links outside ComfyUI's input folder",
                              "'c.png': links outside ComfyUI's input folder")


class LocksTheFolderAfterStep:
    """A progress bar (the trainer updates it after each step's checkpoint) that makes the checkpoint
    folder immutable once step `step` is shown: a disk that stops taking files in the middle of a run."""

    def __init__(self, folder, step: int):
        self.folder, self.step, self.lock = folder, step, contextlib.ExitStack()

    def update(self, step, text=None, preview=None):
        if step == self.step:
            self.lock.enter_context(immutable(self.folder))

    def say(self, text):
        pass


def test_a_checkpoint_that_cannot_be_written_mid_run_stops_by_name_and_keeps_the_one_before(sf, sd15, sets, tmp_path):
    _, training, InputError = sf
    from inst_styleforge.styleforge_core.lora_file import load_lora
    from inst_styleforge.training_kit.optimizer_state import state_path, tensors_fingerprint
    from saved_files import file_metadata

    model, clip, vae = sd15
    path = tmp_path / "ck.safetensors"
    locker = LocksTheFolderAfterStep(tmp_path, step=1)
    config = training.StyleForgeConfig(**{**FAST, "steps": 3, "checkpoint_every": 1})
    with locker.lock, pytest.raises(InputError, match=(
            rf"^Input 'checkpoint_name': could not write ck.safetensors to {re.escape(str(tmp_path))} \(Operation "
            r"not permitted\)\. Checkpoints written before it are kept")):
        with torch.inference_mode():
            training.train_styleforge(model, clip, vae, training.TrainingSets(sets.style, sets.aux), config,
                                      progress_bar=locker, checkpoint_path=path)
    kept = load_lora(path, "resume_from")
    assert kept.steps == 1 and sorted(p.name for p in tmp_path.iterdir()) == ["ck.optimizer", "ck.safetensors"]
    assert file_metadata(state_path(path))["checkpoint"] == tensors_fingerprint(kept.tensors)  # still a pair
