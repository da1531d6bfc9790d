"""The training kit: what the InST and StyleForge trainers share.

The diffusion loss in the model's own parameterisation and its random draws (`diffusion_loss`),
precision (`precision`), the allowed values of the numeric settings (`input_rules`), the fixed
evaluation set (`evaluation`), progress with live loss, previews and Cancel (`progress`), the result
type (`result`), the finite-loss check and the one error type users see (`errors`), atomic writes
and safetensors reads (`files`), image checks and resizes (`images`) and the loss-curve image
(`loss_curve`). Everything ComfyUI-specific goes through `..host`.
"""
