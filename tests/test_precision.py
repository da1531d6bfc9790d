"""training_kit.precision: which autocast a training run uses for the `precision` input, given the
device and the dtype ComfyUI loaded the UNet in. Pure decisions, so a GPU device object is enough."""

import pytest
import torch

GPU = torch.device("cuda")


def test_auto_on_a_gpu_autocasts_in_the_dtype_comfyui_loaded_the_model_in(pkg):
    from inst_styleforge.training_kit.precision import training_precision

    assert training_precision(GPU, "auto", torch.float16).name == "fp16"  # loss-scaled, no weight copies
    assert training_precision(GPU, "auto", torch.bfloat16).name == "bf16"
    assert training_precision(GPU, "bf16", torch.float16).name == "bf16"  # asked for: honoured
    assert training_precision(GPU, "fp32", torch.float32).name == "fp32"


def test_fp32_on_a_half_precision_model_is_refused_with_the_way_to_get_it(pkg):
    from inst_styleforge.training_kit.errors import InputError
    from inst_styleforge.training_kit.precision import training_precision

    with pytest.raises(InputError) as refused:
        training_precision(GPU, "fp32", torch.float16)
    message = str(refused.value)
    assert "Input 'precision'" in message and "loaded it in fp16" in message and "--force-fp32" in message


def test_the_cpu_trains_in_fp32_whatever_the_weights(pkg):
    from inst_styleforge.training_kit.precision import training_precision

    cpu = torch.device("cpu")
    assert training_precision(cpu, "auto", torch.float32).name == "fp32"
    assert training_precision(cpu, "fp32", torch.float32).name == "fp32"
    assert training_precision(cpu, "auto", torch.float16).name == "fp32"
