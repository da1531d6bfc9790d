"""Stochastic inversion through the real server on every SD family (v-prediction included): stock
SamplerCustomAdvanced with our NOISE, and the all-in-one transfer node."""

import numpy as np
import pytest
import torch
from PIL import Image
from prompts import FAMILY_CKPTS, PIX2PIX_UNET, inversion_with_sampler_custom_advanced
from saved_files import saved_latent

from devhost.comfy_server import PromptRejected
from devhost.example_inputs import content_photo
from devhost.paths import BASE_DIR


def _content_file() -> str:
    path = BASE_DIR / "input" / "tests_content.png"
    content_photo(3).save(path)
    return path.name


def _pixels(server, result, node_id: str) -> np.ndarray:
    [path] = server.output_files(result, node_id)
    return np.asarray(Image.open(path))


def _transfer_node(mode: str, style: list | None = None) -> dict:
    inputs = {"model": ["1", 0], "positive": ["4", 0], "negative": ["5", 0], "content": ["3", 0], "strength": 0.7,
              "steps": 5, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal", "seed": 1, "mode": mode}
    return {"class_type": "InST_StyleTransfer", "inputs": inputs | ({"style": style} if style else {})}


def _save(images: list, prefix: str) -> dict:
    return {"class_type": "SaveImage", "inputs": {"images": images, "filename_prefix": prefix}}


# The inversion's two kinds of arithmetic, each through the server: the UNet families' (SD1.5; SD2's v and
# SDXL's reach it as ComfyUI's denoised estimate, the same formula) and flow matching's (SD3.5).
# paper_parity is SD1.x's DDPM/DDIM arithmetic: SD3.5 refuses it (test_inst_inversion.py).
TRANSFER_MODES = {"sd15": (("40", "self_consistent"), ("43", "paper_parity")), "sd35": (("40", "self_consistent"),)}


@pytest.mark.parametrize("family", TRANSFER_MODES)
def test_inversion_noise_in_stock_sampler_custom_advanced_and_the_transfer_node_run_on_both_arithmetics(
        comfy_server, family):
    """In one prompt per family: stock SamplerCustomAdvanced samples from our NOISE and the noise's seed
    reaches it (another seed, another image); the all-in-one transfer runs with AdaIN to a style latent
    in the family's modes. A seed's run is reproducible: tested in-process, where nothing is cached
    (test_inst_inversion.py)."""
    prompt = inversion_with_sampler_custom_advanced(_content_file(), ckpt=FAMILY_CKPTS[family],
                                                    prefix=f"tests/inversion_{family}")
    prompt["27"] = dict(prompt["7"], inputs=dict(prompt["7"]["inputs"], noise_seed=4))
    prompt["30"] = dict(prompt["10"], inputs=dict(prompt["10"]["inputs"], noise=["27", 0]))
    prompt["31"] = dict(prompt["11"], inputs=dict(prompt["11"]["inputs"], samples=["30", 0]))
    prompt["32"] = _save(["31", 0], f"tests/inversion_{family}_seed4")
    prompt["13"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["2", 0], "vae": ["1", 2]}}
    for node_id, mode in TRANSFER_MODES[family]:
        prompt[node_id] = _transfer_node(mode, style=["13", 0])
        prompt[str(int(node_id) + 1)] = {"class_type": "VAEDecode", "inputs": {"samples": [node_id, 0],
                                                                                "vae": ["1", 2]}}
        prompt[str(int(node_id) + 2)] = _save([str(int(node_id) + 1), 0], f"tests/transfer_{family}_{mode}")
    result = comfy_server.run(prompt)
    assert result.ok, result.error
    seed3, seed4 = _pixels(comfy_server, result, "12"), _pixels(comfy_server, result, "32")
    assert not np.array_equal(seed3, seed4)
    for node_id in ("12", "32", *(str(int(node) + 2) for node, _ in TRANSFER_MODES[family])):
        assert _pixels(comfy_server, result, node_id).shape == (64, 64, 3)


def test_a_transfer_strength_outside_0_to_1_is_refused_before_anything_runs(comfy_server):
    prompt = inversion_with_sampler_custom_advanced(_content_file())
    for node in ("6", "7", "8", "9", "10", "11", "12"):  # its only output is the transfer's (ComfyUI queues a
        del prompt[node]                                   # prompt whose other outputs are valid)
    prompt["40"] = _transfer_node("self_consistent")
    prompt["40"]["inputs"]["strength"] = 1.5
    prompt["41"] = {"class_type": "SaveLatent", "inputs": {"samples": ["40", 0], "filename_prefix": "tests/never"}}
    with pytest.raises(PromptRejected, match="strength"):
        comfy_server.queue(prompt)  # refused by the schema's [0, 1] range


def test_a_styleforge_lora_patched_model_drives_the_transfer(comfy_server):
    from styleforge_prompts import image_set, trainer

    from devhost.example_inputs import write_examples

    write_examples(BASE_DIR / "input")
    prompt = inversion_with_sampler_custom_advanced(_content_file())
    for node in ("4", "6", "7", "8", "9", "10", "11", "12"):  # the trainer takes id "4"
        del prompt[node]
    prompt.update({
        "20": image_set("styleref"), "21": image_set("aux"),
        **trainer({"style_images": "20", "aux": "21"}, steps=2, unet_lr=1e-2),
        "23": {"class_type": "CLIPTextEncode", "inputs": {"text": "zwx style", "clip": ["4", 1]}},
    })
    for model, node_id in ((["4", 0], "50"), (["1", 0], "60")):
        prompt[node_id] = {"class_type": "InST_StyleTransfer", "inputs": {
            "model": model, "positive": ["23", 0], "negative": ["5", 0], "content": ["3", 0], "strength": 0.6,
            "steps": 4, "cfg": 5.0, "sampler_name": "euler", "scheduler": "normal", "seed": 1,
            "mode": "self_consistent"}}
        prompt[str(int(node_id) + 1)] = {"class_type": "SaveLatent", "inputs": {
            "samples": [node_id, 0], "filename_prefix": f"tests/lora_transfer_{node_id}"}}
    result = comfy_server.run(prompt)
    assert result.ok, result.error
    assert not torch.equal(saved_latent(comfy_server, result, "51"), saved_latent(comfy_server, result, "61"))


def test_latent_adain_node_gives_the_content_the_style_means_and_keeps_its_layout(comfy_server):

    from devhost.example_inputs import painting

    painting(0, (96, 80)).save(BASE_DIR / "input" / "tests_adain_style.png")
    prompt = inversion_with_sampler_custom_advanced(_content_file())
    for node in ("4", "5", "6", "7", "8", "9", "10", "11", "12"):
        del prompt[node]
    prompt.update({
        "20": {"class_type": "LoadImage", "inputs": {"image": "tests_adain_style.png"}},
        "21": {"class_type": "VAEEncode", "inputs": {"pixels": ["20", 0], "vae": ["1", 2]}},
        "22": {"class_type": "InST_LatentAdaIN", "inputs": {"content": ["3", 0], "style": ["21", 0]}},
    })
    for node_id, source in (("30", "3"), ("31", "21"), ("32", "22")):
        prompt[node_id] = {"class_type": "SaveLatent", "inputs": {"samples": [source, 0],
                                                                   "filename_prefix": f"tests/adain_{node_id}"}}
    result = comfy_server.run(prompt)
    assert result.ok, result.error
    content, style, out = (saved_latent(comfy_server, result, n) for n in ("30", "31", "32"))
    assert out.shape == content.shape and style.shape != content.shape
    torch.testing.assert_close(out.mean((2, 3)), style.mean((2, 3)), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(content.mean((2, 3)), style.mean((2, 3)), atol=1e-5)
    assert torch.corrcoef(torch.stack([out.flatten(), content.flatten()]))[0, 1] > 0.9, "the content's layout"


def test_both_inversion_nodes_refuse_a_model_of_another_family_by_name(comfy_server):
    """An InstructPix2Pix UNet into either node: refused on 'model' before anything samples."""
    prompt = inversion_with_sampler_custom_advanced(_content_file(), prefix="tests/never")
    prompt["20"] = {"class_type": "UNETLoader", "inputs": {"unet_name": PIX2PIX_UNET, "weight_dtype": "default"}}
    noise_only = {**prompt, "7": {**prompt["7"], "inputs": {**prompt["7"]["inputs"], "model": ["20", 0]}}}
    result = comfy_server.run(noise_only)
    assert not result.ok and "Input 'model': is a SD15_instructpix2pix model" in result.error["exception_message"]
    for node in ("6", "7", "8", "9", "10", "11", "12"):
        del prompt[node]
    prompt["40"] = _transfer_node("self_consistent")
    prompt["40"]["inputs"]["model"] = ["20", 0]
    prompt["41"] = {"class_type": "SaveLatent", "inputs": {"samples": ["40", 0], "filename_prefix": "tests/never"}}
    result = comfy_server.run(prompt)
    assert not result.ok and "Input 'model': is a SD15_instructpix2pix model" in result.error["exception_message"]
    assert comfy_server.get("/system_stats")  # still serving
