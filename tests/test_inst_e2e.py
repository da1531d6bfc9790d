"""InST through the real ComfyUI server: train, condition, reload, export on every SD family (SD1.5,
SD2 v-prediction, SDXL), cancel, bad inputs."""

import json
import time

import pytest
import torch
from locked_folders import immutable
from PIL import Image
from prompts import FAMILY_CKPTS, PIX2PIX_UNET, inst_training, sample_to_latent, txt2img, validation_node
from safetensors.torch import load_file
from saved_files import file_metadata, saved_latent

from devhost.paths import BASE_DIR

STYLE_TEXT = "a * painting"


def _error_message(result) -> str:
    assert not result.ok, "the prompt should have failed"
    return result.error.get("exception_message", "")


# Width of each text encoder's token per family, as the exported embedding must hold them (the keys
# stock `embedding:NAME` reads: one tensor for one encoder, clip_l + clip_g for SDXL).
# The two embedding layouts, each through the server: SD1.5's one `emb_params` tensor (SD2's is the same
# at 1024 wide), and SD3.5's `clip_l` + `clip_g` (SDXL's are the same CLIP-L and CLIP-G, in the same
# files). What differs on SD2 and SDXL is tested where it lives: v-prediction's loss in
# test_diffusion_targets.py, SDXL's size conditioning of InST in test_sdxl_size_conditioning.py, and both
# families' text encoders through the server by StyleForge (test_styleforge_e2e.py).
EMBEDDING_SHAPES = {"sd15": {"emb_params": (1, 768)}, "sd35": {"clip_l": (1, 768), "clip_g": (1, 1280)}}


@pytest.mark.parametrize("family", EMBEDDING_SHAPES)
def test_trained_style_conditions_reloads_and_exports_identically(comfy_server, painting_file, family):
    ckpt = FAMILY_CKPTS[family]
    style_file = BASE_DIR / "models" / "inst_styles" / "tests" / f"e2e_{family}.safetensors"
    style_file.unlink(missing_ok=True)
    prompt = inst_training(painting_file, steps=1, filename=f"tests/e2e_{family}", ckpt=ckpt)
    prompt["6"] = {"class_type": "InST_StyleConditioning", "inputs": {
        "clip": ["1", 1], "style": ["4", 0], "text": STYLE_TEXT, "placeholder": "*", "clip_vision_output": ["5", 0]}}
    prompt["7"] = {"class_type": "InST_ExportEmbedding", "inputs": {
        "style": ["4", 0], "name": f"tests_e2e_{family}", "clip_vision_output": ["5", 0]}}
    prompt["8"] = {"class_type": "SaveImage", "inputs": {"images": ["4", 1], "filename_prefix": "tests/inst_loss"}}
    prompt.update(sample_to_latent(["6", 0], f"tests/inst_trained_{family}"))
    trained = comfy_server.run(prompt)
    assert trained.ok, trained.error
    assert trained.outputs["7"]["text"] == [f"embedding:tests_e2e_{family}"]
    embedding_file = BASE_DIR / "models" / "embeddings" / f"tests_e2e_{family}.safetensors"
    # readable by the machine's other users, as ComfyUI's own saves under the usual umask (022)
    assert {oct(p.stat().st_mode & 0o777) for p in (style_file, embedding_file)} == {oct(0o644)}
    embedding = load_file(str(embedding_file))
    assert {k: tuple(v.shape) for k, v in embedding.items()} == EMBEDDING_SHAPES[family]
    [curve] = comfy_server.output_files(trained, "8")
    assert Image.open(curve).size == (640, 360)

    since = len(comfy_server.log_text())
    reload = inst_training(painting_file, ckpt=ckpt)
    del reload["4"]
    reload["6"] = {"class_type": "InST_LoadStyle", "inputs": {"style_name": f"tests/e2e_{family}.safetensors"}}
    reload["7"] = {"class_type": "InST_StyleConditioning", "inputs": {
        "clip": ["1", 1], "style": ["6", 0], "text": STYLE_TEXT, "placeholder": "*", "clip_vision_output": ["5", 0]}}
    reload["8"] = {"class_type": "CLIPTextEncode", "inputs": {"text": f"a embedding:tests_e2e_{family} painting",
                                                               "clip": ["1", 1]}}
    reload.update(sample_to_latent(["7", 0], f"tests/inst_reloaded_{family}", first_id=100))
    reload.update(sample_to_latent(["8", 0], f"tests/inst_stock_embedding_{family}", first_id=200))
    again = comfy_server.run(reload)
    assert again.ok, again.error
    assert comfy_server.log_problems(since) == []
    reference = saved_latent(comfy_server, trained, "103")
    assert torch.equal(saved_latent(comfy_server, again, "103"), reference)  # saved style reloads exactly
    torch.testing.assert_close(saved_latent(comfy_server, again, "203"), reference, rtol=0, atol=1e-5)


# Sampling steps of each validation image in the cancel test: enough that an image takes about a second
# to draw, so Cancel, sent this long after the round's first image is saved (past the second prompt's
# text encoding), lands while the second image is being sampled (ComfyUI's layers check for it).
CANCEL_ROUND_STEPS = 20
CANCEL_DELAY_S = 0.3


def test_cancel_during_a_validation_round_stops_within_one_sampling_step_and_leaves_no_file(comfy_server,
                                                                                           painting_file):
    """Cancelled once training has really started and a validation round is under way (step 1's first
    image is the signal): the round's second image is never drawn, no later step runs, nothing is saved,
    and the server keeps serving."""
    folder = BASE_DIR / "models" / "inst_styles" / "tests"
    prompt = inst_training(painting_file, steps=5000, filename="tests/cancelled_style", seed=99,
                           validation=["50", 0])
    prompt["50"] = validation_node("a * house\n*", "tests_cancel/inst", every=1, steps=CANCEL_ROUND_STEPS)
    started = BASE_DIR / "output" / "tests_cancel"
    for old in started.glob("inst_*"):
        old.unlink()
    prompt_id = comfy_server.queue(prompt)
    deadline = time.time() + 120
    while not list(started.glob("inst_*_step000001_1.png")):
        assert time.time() < deadline, "no step finished within 120 s"
        time.sleep(0.02)
    time.sleep(CANCEL_DELAY_S)
    comfy_server.interrupt()
    result = comfy_server.wait(prompt_id, timeout=120)
    assert result.error and result.error["kind"] == "execution_interrupted"
    drawn = sorted(p.name.split("_", 2)[2] for p in started.glob("inst_*_step*.png"))
    assert drawn == ["step000000_1.png", "step000000_2.png", "step000001_1.png"]
    assert not (folder / "cancelled_style.safetensors").exists()
    assert not [p for p in folder.glob(".*tmp")]
    assert comfy_server.run(txt2img(prefix="tests/after_cancel")).ok


@pytest.mark.parametrize(("change", "message"), [
    ({"filename": "../../escape"}, "Input 'filename': '../../escape' is not a plain file name"),
    ({"resolution": 68}, "Input 'resolution': 68 is not a multiple of 8"),
    ({"precision": "bf16"}, "Input 'precision': bf16 autocast is for GPUs"),
    ({"filename": "tests/" + "x" * 240}, "is too long to save (240 bytes in one name"),
])
def test_bad_trainer_inputs_are_named(comfy_server, painting_file, change, message):
    result = comfy_server.run(inst_training(painting_file, **{"steps": 1, "filename": "tests/never", **change}))
    assert message in _error_message(result)


def test_a_save_target_that_is_a_folder_or_cannot_be_written_is_refused_before_training(comfy_server, painting_file):
    folder = BASE_DIR / "models" / "inst_styles" / "tests"
    (folder / "a_folder.safetensors").mkdir(parents=True, exist_ok=True)
    result = comfy_server.run(inst_training(painting_file, steps=1, filename="tests/a_folder"))
    assert "Input 'filename': 'tests/a_folder' is a folder in" in _error_message(result)
    locked = folder / "locked"
    locked.mkdir(exist_ok=True)
    with immutable(locked):
        result = comfy_server.run(inst_training(painting_file, steps=1, filename="tests/locked/style"))
    assert f"Input 'filename': cannot write to {locked} (Operation not permitted)." in _error_message(result)
    assert not list(locked.iterdir())


def test_one_pixel_painting_is_refused(comfy_server):
    path = BASE_DIR / "input" / "tests_one_pixel.png"
    Image.new("RGB", (1, 1), (255, 0, 0)).save(path)
    result = comfy_server.run(inst_training(path.name, steps=1, filename=""))
    assert "Input 'painting': is 1x1 pixels" in _error_message(result)


def test_prompt_without_placeholder_is_refused(comfy_server, painting_file):
    prompt = inst_training(painting_file, steps=1, filename="")
    prompt["6"] = {"class_type": "InST_StyleConditioning", "inputs": {
        "clip": ["1", 1], "style": ["4", 0], "text": "a painting", "placeholder": "*", "clip_vision_output": ["5", 0]}}
    prompt.update(sample_to_latent(["6", 0], "tests/never"))
    assert "Input 'text': has no '*'" in _error_message(comfy_server.run(prompt))


def test_a_model_of_another_family_is_refused_through_the_server(comfy_server, painting_file):
    prompt = inst_training(painting_file, steps=1, filename="")
    prompt["9"] = {"class_type": "UNETLoader", "inputs": {"unet_name": PIX2PIX_UNET, "weight_dtype": "default"}}
    prompt["4"]["inputs"]["model"] = ["9", 0]
    assert "Input 'model': is a SD15_instructpix2pix model" in _error_message(comfy_server.run(prompt))


def _save_foreign_style(pkg, name: str, **spec) -> str:
    """A style file as the trainer would write it for another setup (random weights, real format)."""
    from inst_styleforge.inst_core.style import InSTStyle, StyleSpec
    from inst_styleforge.inst_core.style_file import save_style

    save_style(InSTStyle(StyleSpec(**spec)), BASE_DIR / "models" / "inst_styles" / "tests" / f"{name}.safetensors")
    return f"tests/{name}.safetensors"


def _condition_with_style_file(painting_file: str, style_name: str) -> dict:
    prompt = inst_training(painting_file)
    del prompt["4"]
    prompt["6"] = {"class_type": "InST_LoadStyle", "inputs": {"style_name": style_name}}
    prompt["7"] = {"class_type": "InST_StyleConditioning", "inputs": {
        "clip": ["1", 1], "style": ["6", 0], "text": STYLE_TEXT, "placeholder": "*", "clip_vision_output": ["5", 0]}}
    prompt.update(sample_to_latent(["7", 0], "tests/never"))
    return prompt


def test_a_style_trained_for_another_family_is_refused(comfy_server, painting_file, pkg):
    name = _save_foreign_style(pkg, "sdxl_style", family="SDXL", token_widths={"l": 768, "g": 1280}, image_dim=768)
    message = _error_message(comfy_server.run(_condition_with_style_file(painting_file, name)))
    assert "Input 'clip': has text encoders {'l': 768} but this style was trained for SDXL" in message


def test_a_clip_vision_of_another_width_is_refused(comfy_server, painting_file, pkg):
    name = _save_foreign_style(pkg, "vit_h_style", family="SD15", token_widths={"l": 768}, image_dim=1024)
    message = _error_message(comfy_server.run(_condition_with_style_file(painting_file, name)))
    assert "Input 'clip_vision_output': gives 768-d image embeddings but this style was trained on 1024-d" in message


def test_the_longest_name_the_temporary_file_allows_saves_and_one_byte_more_is_refused(comfy_server, pkg):
    from inst_styleforge.training_kit.files import MAX_NAME_PART_BYTES

    style = _save_foreign_style(pkg, "to_resave", family="SD15", token_widths={"l": 768}, image_dim=768)
    folder = BASE_DIR / "models" / "inst_styles" / "tests"
    for length in (MAX_NAME_PART_BYTES, MAX_NAME_PART_BYTES + 1):
        result = comfy_server.run({
            "1": {"class_type": "InST_LoadStyle", "inputs": {"style_name": style}},
            "2": {"class_type": "InST_SaveStyle", "inputs": {"style": ["1", 0], "filename": "tests/" + "n" * length}}})
        saved = folder / ("n" * length + ".safetensors")
        if length == MAX_NAME_PART_BYTES:
            assert result.ok, result.error
            assert saved.is_file()
        else:
            assert f"is too long to save ({length} bytes in one name" in _error_message(result)
            assert not saved.exists()


def test_an_embedding_name_stock_prompts_cannot_use_is_refused(comfy_server, painting_file):
    prompt = inst_training(painting_file, steps=1, filename="")
    prompt["6"] = {"class_type": "InST_ExportEmbedding", "inputs": {
        "style": ["4", 0], "name": "my style", "clip_vision_output": ["5", 0]}}
    message = _error_message(comfy_server.run(prompt))
    assert "Input 'name': 'my style' has a space" in message and "e.g. 'my_style'" in message
    assert not (BASE_DIR / "models" / "embeddings" / "my style.safetensors").exists()


def test_a_saved_style_continues_through_the_server_and_keeps_its_optimizer_beside_it(comfy_server, painting_file):
    folder = BASE_DIR / "models" / "inst_styles" / "tests"
    first = comfy_server.run(inst_training(painting_file, steps=2, filename="tests/continued_a"))
    assert first.ok, first.error
    assert (folder / "continued_a.optimizer").exists()
    second = comfy_server.run(inst_training(painting_file, steps=4, filename="tests/continued_b",
                                            continue_from="tests/continued_a.safetensors"))
    assert second.ok, second.error
    spec = json.loads(file_metadata(folder / "continued_b.safetensors")["spec"])
    assert spec["training"]["steps"] == 4
