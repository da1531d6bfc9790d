"""The dev host itself: fixtures detected as the intended families, the server loads this package."""

import torch
from PIL import Image
from prompts import txt2img


def test_tiny_sd15_is_detected_as_sd15_eps(sd15):
    model, clip, vae = sd15
    assert type(model.model.model_config).__name__ == "SD15"
    assert model.model.model_type.name == "EPS"
    assert type(vae.first_stage_model).__name__ == "TAESD"
    cond = clip.encode_from_tokens(clip.tokenize("a cat"))
    assert cond.shape == (1, 77, 768) and torch.isfinite(cond).all()


def test_tiny_sd35_is_detected_as_sd35_medium_with_flow_sampling_and_both_clip_towers(sd35):
    model, clip, vae = sd35
    config = model.model.model_config
    assert type(config).__name__ == "SD3" and model.model.model_type.name == "FLOW"
    assert config.unet_config["qk_norm"] == "rms" and config.unet_config["x_block_self_attn_layers"] == [0]
    assert model.get_model_object("model_sampling").shift == 3.0
    assert clip.cond_stage_model.clip_l is not None and clip.cond_stage_model.clip_g is not None
    assert clip.cond_stage_model.t5xxl is None
    assert type(vae.first_stage_model).__name__ == "TAESD" and vae.latent_channels == 16
    cond, pooled = clip.encode_from_tokens(clip.tokenize("a cat"), return_pooled=True)
    assert cond.shape == (1, 77, 4096) and pooled.shape == (1, 2048) and torch.isfinite(cond).all()


def test_tiny_clip_vision_is_detected_as_vit_l14(clip_vision):
    with torch.inference_mode():  # as the server's executor runs it
        out = clip_vision.encode_image(torch.rand(1, 224, 224, 3))
    assert clip_vision.image_size == 224
    assert out["image_embeds"].shape == (1, 768)
    assert out["penultimate_hidden_states"].shape == (1, 257, 1024)
    assert torch.isfinite(out["image_embeds"]).all()


def test_server_lists_this_package_without_import_errors(comfy_server):
    info = comfy_server.get("/object_info")
    ours = [name for name, node in info.items() if "inst_styleforge" in node.get("python_module", "")]
    assert "InST_LatentAdaIN" in ours
    assert comfy_server.log_problems() == []


def test_stock_txt2img_runs_on_tiny_sd15_through_the_server(comfy_server):
    result = comfy_server.run(txt2img())
    assert result.ok, result.error
    [image_path] = comfy_server.output_files(result, "7")
    with Image.open(image_path) as image:
        assert image.size == (64, 64)
