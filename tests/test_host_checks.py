"""A ComfyUI that is not what the trainers assume (as ComfyUI 0.38 can be: dynamic VRAM streaming the
weights, layers created empty and loaded on demand, quantized weights, a model that no longer calls
the forwards the trainers set, a model run without autograd, LoRA hooks that do not fire) stops a
training run before its optimizer's first step, with a message naming the ComfyUI version, what was
found and what to do, and nothing written. Each drift is simulated on the real tiny models."""

import dataclasses

import pytest
import torch
from images_for_tests import painting_tensor

INST_FAST = dict(steps=2, resolution=64, learning_rate=1e-3)
SF_FAST = dict(steps=2, resolution=64, unet_lr=1e-3, rank=4, alpha=4.0, checkpoint_every=1)
TESTED_PREFIX = "ComfyUI 0.3.75 (tested: 0.3.75): "


@pytest.fixture(scope="module")
def kit(pkg):
    from inst_styleforge.host.version import HostMismatch
    from inst_styleforge.inst_core import training as inst
    from inst_styleforge.styleforge_core import training as styleforge

    return inst, styleforge, HostMismatch


def _train_inst(kit, models, clip_vision, folder):
    inst, _, _ = kit
    model, clip, vae = models
    with torch.inference_mode():
        inst.train_style(model, clip, vae, clip_vision, [painting_tensor()], inst.InSTTrainingConfig(**INST_FAST),
                         save_to=folder / "style.safetensors")


def _train_styleforge(kit, models, sets, folder, **settings):
    _, styleforge, _ = kit
    model, clip, vae = models
    config = styleforge.StyleForgeConfig(**{**SF_FAST, **settings})
    with torch.inference_mode():
        styleforge.train_styleforge(model, clip, vae, dataclasses.replace(sets, backgrounds=None), config,
                                    checkpoint_path=folder / "checkpoint.safetensors")


def _refused(kit, run, folder, *found: str):
    with pytest.raises(kit[2]) as refused:
        run()
    message = str(refused.value)
    assert message.startswith(TESTED_PREFIX) and message.endswith("Nothing was trained or written."), message
    for text in found:
        assert text in message
    assert not list(folder.iterdir()), "nothing is written"


def _replace_weight(module: torch.nn.Module, name: str, tensor: torch.Tensor) -> None:
    owner, _, attribute = name.rpartition(".")
    setattr(module.get_submodule(owner), attribute, torch.nn.Parameter(tensor, requires_grad=False))


def test_dynamic_vram_stops_training_naming_the_launch_flag(kit, sd15, clip_vision, tmp_path):
    model, clip, vae = sd15
    streamed = model.clone()
    streamed.is_dynamic = lambda: True  # ComfyUI 0.38's ModelPatcherDynamic says so
    _refused(kit, lambda: _train_inst(kit, (streamed, clip, vae), clip_vision, tmp_path), tmp_path,
             "loads this model with dynamic VRAM", "--disable-dynamic-vram")


def test_a_weight_left_on_the_meta_device_stops_training(kit, fresh_sd15, clip_vision, tmp_path):
    model, _, _ = fresh_sd15
    name = "diffusion_model.input_blocks.0.0.weight"
    _replace_weight(model.model, name, torch.empty(model.model.get_parameter(name).shape, device="meta"))
    _refused(kit, lambda: _train_inst(kit, fresh_sd15, clip_vision, tmp_path), tmp_path,
             f"weight {name} is not loaded (meta)")


class QuantizedTensor(torch.Tensor):
    """Stands in for ComfyUI 0.38's quantized weight type (a torch.Tensor subclass)."""


def test_a_quantized_weight_stops_training_naming_the_layer(kit, fresh_sd15, styleforge_sets, tmp_path):
    model, _, _ = fresh_sd15
    name = "diffusion_model.output_blocks.0.1.proj_in.weight"
    weight = model.model.get_parameter(name).detach().clone()
    _replace_weight(model.model, name, torch.Tensor._make_subclass(QuantizedTensor, weight))
    _refused(kit, lambda: _train_styleforge(kit, fresh_sd15, styleforge_sets, tmp_path), tmp_path,
             f"weight {name} is a QuantizedTensor", "Load the model unquantized")


def _calling_the_class_forward(module: torch.nn.Module) -> None:
    """The module as a host that calls its class's forward directly (a fused or compiled path would):
    instance forwards and forward hooks never run."""
    class Direct(type(module)):
        def __call__(self, *args, **kwargs):
            return type(module).forward(self, *args, **kwargs)

    module.__class__ = Direct


def test_a_text_encoder_that_skips_the_trainers_forward_stops_training(kit, fresh_sd15, clip_vision, tmp_path):
    import comfy.clip_model

    _, clip, _ = fresh_sd15
    layers = [m for m in clip.cond_stage_model.modules() if isinstance(m, comfy.clip_model.CLIPLayer)]
    for layer in layers:
        _calling_the_class_forward(layer)
    _refused(kit, lambda: _train_inst(kit, fresh_sd15, clip_vision, tmp_path), tmp_path,
             "without calling the forward these trainers set on its text encoder layers (CLIPLayer)")


def test_a_unet_run_without_autograd_stops_training(kit, fresh_sd15, clip_vision, tmp_path):
    model, _, _ = fresh_sd15
    unet = model.model.diffusion_model

    def forward(*args, **kwargs):
        with torch.no_grad():
            return type(unet).forward(unet, *args, **kwargs)

    unet.forward = forward
    _refused(kit, lambda: _train_inst(kit, fresh_sd15, clip_vision, tmp_path), tmp_path,
             "the training loss came out without a gradient")


def test_unet_lora_hooks_that_never_fire_stop_training(kit, fresh_sd15, styleforge_sets, tmp_path):
    """The text encoder's adapters train, so the loss has a gradient; the UNet's get none."""
    model, _, _ = fresh_sd15
    for layer in model.model.diffusion_model.modules():
        if isinstance(layer, torch.nn.Linear):
            _calling_the_class_forward(layer)
    _refused(kit, lambda: _train_styleforge(kit, fresh_sd15, styleforge_sets, tmp_path, text_encoder_lr=1e-3),
             tmp_path, "no gradient reached", "of the trained weights after the first step")


def test_start_up_logs_the_comfyui_version_and_whether_it_was_tested(comfy_server, pkg):
    from inst_styleforge.host.version import in_tested_range

    assert "InST + StyleForge: ComfyUI 0.3.75 (tested: 0.3.75)." in comfy_server.log_text()
    assert in_tested_range("0.3.75") and not in_tested_range("0.38.1") and not in_tested_range("unknown")
