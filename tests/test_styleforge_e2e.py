"""StyleForge end to end through the real ComfyUI server: train -> save -> stock LoraLoader on every
family it trains, SD1.5, SD2 768-v, SDXL and SD3.5 (the UNet families with their text encoders trained
too), Multi on SD1.5 and SD3.5, Cancel mid-training with its explanation and resume, the image sets'
folder list. At 64 px with a few steps. That gradient checkpointing trains the same LoRA is math,
checked in-process (test_styleforge_training.py)."""

import json
import shutil
import time

import pytest
import torch
from locked_folders import immutable
from PIL import Image
from prompts import FAMILY_CKPTS, PIX2PIX_UNET
from safetensors.torch import load_file
from saved_files import file_metadata, saved_latent
from styleforge_prompts import EXAMPLE, TINY_TRAINING, stock_lora_sample, train_multi, train_single

from devhost.example_inputs import write_examples
from devhost.paths import BASE_DIR

LORAS = BASE_DIR / "models" / "loras"
# The LoRA is saved in fp32 and stock LoraLoader merges it into the weights exactly as the trainer's
# own MODEL/CLIP outputs do (the same ComfyUI patch path), so the sampled latents agree to float
# rounding; 1e-4 absolute on latents of magnitude ~1 leaves room for summation-order differences only.
LATENT_TOLERANCE = 1e-4
TRAINER = "4"  # the trainer's node id in train_single's prompts


@pytest.fixture(scope="module")
def server(comfy_server):
    write_examples(BASE_DIR / "input")
    return comfy_server


def _ok(result):
    assert result.ok, result.error


# The kohya prefixes of the text-encoder LoRA keys per family (SDXL, SD3.5: one per CLIP text encoder).
TEXT_ENCODER_PREFIXES = {"sd15": {"lora_te_"}, "sd2_v": {"lora_te_"}, "sdxl": {"lora_te1_", "lora_te2_"},
                         "sd35": {"lora_te1_", "lora_te2_"}}
FAMILY_NAMES = {"sd15": "SD15", "sd2_v": "SD20", "sdxl": "Segmind_Vega", "sd35": "SD3"}


def _text_encoder_prefixes(keys) -> set[str]:
    return {k.split("_", 2)[0] + "_" + k.split("_", 2)[1] + "_" for k in keys if k.startswith("lora_te")}


# Text encoders trained on every UNet family; SD3.5's are SDXL's CLIP-L and CLIP-G, whose adapters'
# names test_sd35_text_encoder_adapters_... checks against ComfyUI's key map, so SD3.5 trains its MMDiT.
TEXT_ENCODER_LR = {family: 1e-3 for family in FAMILY_CKPTS} | {"sd35": 0.0}


@pytest.mark.parametrize("family", FAMILY_CKPTS)
def test_single_lora_loads_in_stock_lora_loader_and_reproduces_the_trainer(server, family):
    ckpt = FAMILY_CKPTS[family]
    trained = server.run(train_single(f"styleforge_test/single_{family}", f"styleforge_test/trainer_{family}",
                                      ckpt=ckpt, text_encoder_lr=TEXT_ENCODER_LR[family], seed=11,
                                      aspect_buckets=True))
    _ok(trained)
    lora_file = LORAS / "styleforge_test" / f"single_{family}.safetensors"
    assert lora_file.stat().st_mode & 0o777 == 0o644  # as ComfyUI's own saves under the usual umask (022)
    keys = load_file(str(lora_file)).keys()
    assert any(k.startswith("lora_unet_") for k in keys)
    assert _text_encoder_prefixes(keys) == (TEXT_ENCODER_PREFIXES[family] if TEXT_ENCODER_LR[family] else set())
    meta = file_metadata(lora_file)
    assert meta["method"] == "Single" and meta["base_model_family"] == FAMILY_NAMES[family]
    assert meta["steps"] == str(TINY_TRAINING["steps"])
    assert json.loads(meta["tokens"]) == {"V": "zwx"} and json.loads(meta["datasets"])["aux"]["images"] == 4
    assert json.loads(meta["settings"])["aspect_buckets"] is True  # the options node's input reached the trainer

    since = len(server.log_text())
    loaded = server.run(stock_lora_sample(f"styleforge_test/single_{family}.safetensors",
                                          f"styleforge_test/stock_{family}", ckpt=ckpt))
    _ok(loaded)
    assert server.log_problems(since=since) == []  # every key loaded
    ours, stock = saved_latent(server, trained, "94"), saved_latent(server, loaded, "94")
    assert torch.allclose(ours, stock, atol=LATENT_TOLERANCE), (ours - stock).abs().max()


# Multi through the server on SD1.5 and SD3.5 (a UNet and an MMDiT), text encoders trained as in
# Single (TEXT_ENCODER_LR). On SD2 and SDXL it shares Single's loss, size conditioning and save path,
# which test_single_...[sd2_v] and [sdxl] run through the server (every key in stock Load LoRA) and
# test_sdxl_size_conditioning.py checks in-process; what Multi adds, turns and lambdas, is checked
# in-process in test_styleforge_training.py.
@pytest.mark.parametrize("family", ["sd15", "sd35"])
def test_multi_binds_both_tokens_and_loads_in_stock_lora_loader(server, family):
    ckpt, text_encoder_lr = FAMILY_CKPTS[family], TEXT_ENCODER_LR[family]
    result = server.run(train_multi(f"styleforge_test/multi_{family}", ckpt=ckpt, steps=1, seed=12,
                                    passes="separate", text_encoder_lr=text_encoder_lr))
    _ok(result)
    lora_file = LORAS / "styleforge_test" / f"multi_{family}.safetensors"
    keys = load_file(str(lora_file)).keys()
    assert _text_encoder_prefixes(keys) == (TEXT_ENCODER_PREFIXES[family] if text_encoder_lr else set())
    assert any(k.startswith("lora_unet_") for k in keys)
    meta = file_metadata(lora_file)
    assert meta["method"] == "Multi" and meta["base_model_family"] == FAMILY_NAMES[family]
    assert json.loads(meta["settings"])["passes"] == "separate"
    assert json.loads(meta["tokens"]) == {"V": "zwx", "W": "ohwx"}
    assert json.loads(meta["prompts"]) == {"V": "zwx style", "W": "ohwx style", "aux": "style"}
    assert set(json.loads(meta["datasets"])) == {"people", "backgrounds", "aux"}
    since = len(server.log_text())
    _ok(server.run(stock_lora_sample(f"styleforge_test/multi_{family}.safetensors",
                                     f"styleforge_test/stock_multi_{family}", ckpt=ckpt)))
    assert server.log_problems(since=since) == []  # every key loaded


def _wait_for(path, timeout: float = 300) -> None:
    t0 = time.time()
    while not path.exists():
        assert time.time() - t0 < timeout, f"{path} never appeared"
        time.sleep(0.02)


def test_cancel_right_after_a_checkpoint_stops_within_one_step_and_resume_continues_from_it(server):
    """Cancel sent as soon as a checkpoint is written (one every step): at most the step then under way
    finishes, its checkpoint is kept, and a resume continues from it. The node says what it prepares from
    its first moment, then, after Cancel, where it stopped and what is kept; the checkpoint is in
    resume_from's list without a restart."""
    checkpoint = LORAS / "styleforge_test" / "cancel_ckpt.safetensors"
    checkpoint.unlink(missing_ok=True)
    prompt = train_single("styleforge_test/never", "styleforge_test/never", steps=500, checkpoint_every=1,
                          checkpoint_name="styleforge_test/cancel_ckpt", seed=13)
    with server.progress_texts() as texts:
        prompt_id = server.queue(prompt)
        _wait_for(checkpoint)
        server.interrupt()
        steps_at_cancel = int(file_metadata(checkpoint)["steps"])
        cancelled = server.wait(prompt_id)
        steps_done = int(file_metadata(checkpoint)["steps"])
        explained = (f"Cancelled after step {steps_done} of 500. The checkpoint of step {steps_done} is kept: to go on "
                     "from it, choose styleforge_test/cancel_ckpt.safetensors in resume_from")
        _wait_for_text(texts, TRAINER, explained)
    assert not cancelled.ok and cancelled.error["kind"] == "execution_interrupted"
    assert not list(checkpoint.parent.glob("*.tmp")) and not list(checkpoint.parent.glob(".*"))
    assert steps_at_cancel <= steps_done <= steps_at_cancel + 1
    assert not (LORAS / "styleforge_test" / "never.safetensors").exists()
    shown = [text for node, text in texts if node == TRAINER]
    assert shown[0] == "preparing: 8 images to latents through the VAE", shown[:3]  # 4 StyleRef, 4 Aux
    options = server.get("/object_info/StyleForge_Options")["StyleForge_Options"]["input"]["required"]
    assert "styleforge_test/cancel_ckpt.safetensors" in options["resume_from"][1]["options"]

    resumed = server.run(train_single("styleforge_test/resumed", "styleforge_test/resumed", steps=steps_done + 2,
                                      resume_from="styleforge_test/cancel_ckpt.safetensors", seed=13))
    _ok(resumed)
    assert file_metadata(LORAS / "styleforge_test" / "resumed.safetensors")["steps"] == str(steps_done + 2)


def _wait_for_text(texts: list, node: str, start: str, timeout: float = 30) -> None:
    """Until the node has shown a text starting with `start` (texts arrive over the websocket)."""
    deadline = time.time() + timeout
    while not any(n == node and t.startswith(start) for n, t in texts):
        assert time.time() < deadline, f"node {node} never showed {start!r}: {texts[-3:]}"
        time.sleep(0.05)


def test_a_lora_that_could_not_be_saved_is_saved_by_queueing_again_without_training_again(server):
    folder = LORAS / "styleforge_test" / "locked"
    folder.mkdir(parents=True, exist_ok=True)
    prompt = train_single("styleforge_test/locked/lora", "styleforge_test/locked_sample", seed=21)
    with immutable(folder):
        refused = server.run(prompt)
    assert not refused.ok and f"Input 'filename': cannot write to {folder}" in refused.error["exception_message"]
    again = server.run(prompt)
    _ok(again)
    [cached] = [body["nodes"] for kind, body in again.messages if kind == "execution_cached"]
    assert "4" in cached  # the trainer's LoRA came from ComfyUI's cache: only the save (and sampling) ran
    assert (folder / "lora.safetensors").is_file()


def test_a_run_that_cannot_change_any_weight_is_refused_and_the_server_goes_on(server):
    refused = server.run(train_single("styleforge_test/no_lr", "styleforge_test/no_lr", unet_lr=0.0,
                                      text_encoder_lr=0.0))
    assert not refused.ok
    assert "Input 'unet_lr'" in refused.error["exception_message"]
    assert "text_encoder_lr are both 0" in refused.error["exception_message"]
    assert not (LORAS / "styleforge_test" / "no_lr.safetensors").exists()
    assert server.get("/system_stats")["system"]


def test_a_model_of_a_family_it_does_not_train_is_refused_naming_those_it_does(server):
    prompt = train_single("styleforge_test/pix2pix", "styleforge_test/pix2pix")
    prompt["9"] = {"class_type": "UNETLoader", "inputs": {"unet_name": PIX2PIX_UNET, "weight_dtype": "default"}}
    prompt[TRAINER]["inputs"]["model"] = ["9", 0]
    refused = server.run(prompt)
    assert not refused.ok
    assert refused.error["exception_message"].startswith(
        "Input 'model': is a SD15_instructpix2pix model; this node needs a Stable Diffusion model: an SD1.x, SD2.x or "
        "SDXL UNet, or SD3/SD3.5's MMDiT, or FLUX.1 [dev]'s DiT.")
    assert not (LORAS / "styleforge_test" / "pix2pix.safetensors").exists()


def test_image_sets_list_the_folders_under_input_as_they_are_now(server):
    """The folder list is ComfyUI's input folders, read each time the frontend asks: a folder made now
    is in it (the frontend shows it after a refresh, no restart)."""
    made = BASE_DIR / "input" / "styleforge_test_listed" / "styleref"
    shutil.rmtree(made.parent, ignore_errors=True)

    def folders() -> list[str]:
        inputs = server.get("/object_info/StyleForge_ImageSet")["StyleForge_ImageSet"]["input"]["required"]
        return inputs["folder"][1]["options"]

    assert "styleforge_test_listed/styleref" not in folders()
    made.mkdir(parents=True)
    listed = folders()
    assert listed[0] == "[none]" and {"styleforge_test_listed", "styleforge_test_listed/styleref",
                                       f"{EXAMPLE}/styleref", f"{EXAMPLE}/aux"} <= set(listed)


def test_a_folder_of_too_small_images_is_reported_as_too_small_not_unreadable(server):
    """Typed as no list shows it (a trailing '/'): the prompt is accepted, and the folder read."""
    folder = BASE_DIR / "input" / "styleforge_test_small"
    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), (200, 30, 30)).save(folder / "tiny.png")
    prompt = train_single("styleforge_test/never", "styleforge_test/never")
    prompt["2"] = {"class_type": "StyleForge_ImageSet", "inputs": {"folder": "styleforge_test_small/"}}
    message = server.run(prompt).error["exception_message"]
    assert "Input 'folder': folder 'styleforge_test_small/' has no usable images" in message
    assert "refused 1 images: 'tiny.png': is 4x4 pixels" in message and "unreadable" not in message
