"""StyleForge end to end through the real ComfyUI server: train -> save -> stock LoraLoader, Multi,
Cancel mid-training, resume. All on the tiny SD1.5 at 64 px with a few steps."""

import json
import time

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from styleforge_prompts import stock_lora_sample, train_multi, train_single

from devhost.example_inputs import write_examples
from devhost.paths import BASE_DIR

LORAS = BASE_DIR / "models" / "loras"
# The LoRA is saved in fp32 and stock LoraLoader merges it into the weights exactly as the trainer's
# own MODEL/CLIP outputs do (the same ComfyUI patch path), so the sampled latents agree to float
# rounding; 1e-4 absolute on latents of magnitude ~1 leaves room for summation-order differences only.
LATENT_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def server(comfy_server):
    write_examples(BASE_DIR / "input")
    return comfy_server


def _metadata(path) -> dict:
    with safe_open(str(path), framework="pt") as file:
        return file.metadata()


def _latent(server, result, node_id: str = "94") -> torch.Tensor:
    [path] = server.output_files(result, node_id, key="latents")
    return load_file(str(path))["latent_tensor"]


def _ok(result):
    assert result.ok, result.error


def test_single_lora_loads_in_stock_lora_loader_and_reproduces_the_trainer(server):
    trained = server.run(train_single("styleforge_test/single", "styleforge_test/trainer", text_encoder_lr=1e-3,
                                      seed=11))
    _ok(trained)
    lora_file = LORAS / "styleforge_test" / "single.safetensors"
    keys = load_file(str(lora_file)).keys()
    assert any(k.startswith("lora_unet_") for k in keys) and any(k.startswith("lora_te_") for k in keys)
    meta = _metadata(lora_file)
    assert meta["method"] == "Single" and meta["base_model_family"] == "SD15" and meta["steps"] == "3"
    assert json.loads(meta["tokens"]) == {"V": "zwx"} and json.loads(meta["datasets"])["aux"]["images"] == 4

    since = len(server.log_text())
    loaded = server.run(stock_lora_sample("styleforge_test/single.safetensors", "styleforge_test/stock"))
    _ok(loaded)
    assert server.log_problems(since=since) == []
    ours, stock = _latent(server, trained), _latent(server, loaded)
    assert torch.allclose(ours, stock, atol=LATENT_TOLERANCE), (ours - stock).abs().max()


def test_multi_trains_both_tokens_with_separate_passes(server):
    result = server.run(train_multi("styleforge_test/multi", steps=2, seed=12, passes="separate"))
    _ok(result)
    meta = _metadata(LORAS / "styleforge_test" / "multi.safetensors")
    assert meta["method"] == "Multi"
    assert json.loads(meta["settings"])["passes"] == "separate"
    assert json.loads(meta["tokens"]) == {"V": "zwx", "W": "ohwx"}
    assert json.loads(meta["prompts"]) == {"V": "zwx style", "W": "ohwx style", "aux": "style"}
    assert set(json.loads(meta["datasets"])) == {"people", "backgrounds", "aux"}


def _wait_for(path, timeout: float = 300) -> None:
    t0 = time.time()
    while not path.exists():
        assert time.time() - t0 < timeout, f"{path} never appeared"
        time.sleep(0.2)


def test_cancel_keeps_the_last_checkpoint_and_resume_continues_from_its_step(server):
    checkpoint = LORAS / "styleforge_test" / "cancel_ckpt.safetensors"
    checkpoint.unlink(missing_ok=True)
    prompt = train_single("styleforge_test/never", "styleforge_test/never", steps=500, checkpoint_every=2,
                          checkpoint_name="styleforge_test/cancel_ckpt", seed=13)
    prompt_id = server.queue(prompt)
    _wait_for(checkpoint)
    server.interrupt()
    cancelled = server.wait(prompt_id)
    assert not cancelled.ok and cancelled.error["kind"] == "execution_interrupted"
    assert not list(checkpoint.parent.glob("*.tmp")) and not list(checkpoint.parent.glob(".*"))
    steps_done = int(_metadata(checkpoint)["steps"])
    assert steps_done % 2 == 0 and 2 <= steps_done < 500
    assert not (LORAS / "styleforge_test" / "never.safetensors").exists()

    resumed = server.run(train_single("styleforge_test/resumed", "styleforge_test/resumed", steps=steps_done + 2,
                                      resume_from="styleforge_test/cancel_ckpt.safetensors", seed=13))
    _ok(resumed)
    assert _metadata(LORAS / "styleforge_test" / "resumed.safetensors")["steps"] == str(steps_done + 2)
