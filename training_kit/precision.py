"""Training precision, one list for both trainers: fp16/bf16 autocast on a GPU (by default the precision
ComfyUI loaded the model in), fp32 on the CPU (where autocast is several times slower, so asking for it
there is refused rather than silently slow), and loss scaling whenever fp16 is used."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from .errors import InputError

PRECISIONS = ("auto", "fp32", "fp16", "bf16")
AUTOCAST_DTYPES = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}
TRAIN_IN_FP32 = "train in fp32 (on a GPU: start ComfyUI with --force-fp32)"  # the fix for a loss that overflows
PRECISION_TOOLTIP = ("auto: on a GPU, autocast in the precision ComfyUI loaded the model in (fp16 with loss scaling, "
                     "or bf16; bf16 or fp16 if it loaded fp32); fp32 on a CPU. fp32 on a GPU needs ComfyUI started "
                     "with --force-fp32.")


@dataclass(frozen=True)
class Precision:
    device_type: str  # "cuda", "cpu", ...
    dtype: torch.dtype | None  # autocast dtype; None = plain fp32

    @property
    def name(self) -> str:
        """"fp32", "fp16" or "bf16", as the precision input names it."""
        return next(name for name, dtype in AUTOCAST_DTYPES.items() if dtype == self.dtype)

    def autocast(self) -> contextlib.AbstractContextManager:
        """Wrap forwards (not backward) in this."""
        return torch.autocast(self.device_type, dtype=self.dtype) if self.dtype else contextlib.nullcontext()

    def grad_scaler(self) -> torch.amp.GradScaler:
        """fp16 keeps 5 exponent bits: gradients under ~6e-8 flush to zero in its backward. The scaler
        multiplies the loss before backward and divides the gradients before the optimizer step (and
        skips a step whose gradients overflowed). A pass-through for fp32 and bf16."""
        return torch.amp.GradScaler(self.device_type, enabled=self.dtype == torch.float16)


def training_precision(device: torch.device, precision: str, compute_dtype: torch.dtype = torch.float32) -> Precision:
    """The precision a trainer runs at for the `precision` input. `compute_dtype` is the dtype the UNet
    computes in as ComfyUI loaded it (fp16 or bf16 on most GPUs): ComfyUI casts the UNet's inputs to it
    whatever autocast says. "auto" autocasts to it, so no frozen weight gets a cast copy kept for
    backward (bf16 autocast over an fp16 UNet would keep a bf16 copy of every weight); on fp32 weights,
    bf16 where the GPU supports it, else fp16. On the CPU, fp32."""
    if precision not in PRECISIONS:
        raise InputError("precision", f"'{precision}' is not one of {list(PRECISIONS)}.")
    if device.type == "cpu":
        if AUTOCAST_DTYPES.get(precision) is not None:
            raise InputError("precision", f"{precision} autocast is for GPUs; on a CPU it is several times slower.",
                             "Use fp32 (or auto) on the CPU.")
        return Precision(device.type, None)
    if precision == "fp32" and compute_dtype != torch.float32:
        loaded = Precision(device.type, compute_dtype).name
        raise InputError("precision", f"fp32 training needs the model in fp32, but ComfyUI loaded it in {loaded}, "
                         f"so it would compute in {loaded} without loss scaling.",
                         "Use auto (the model's own precision, loss-scaled for fp16), or start ComfyUI with "
                         "--force-fp32 to load models in fp32.")
    if precision == "auto":
        if compute_dtype in (torch.float16, torch.bfloat16):
            return Precision(device.type, compute_dtype)
        bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return Precision(device.type, torch.bfloat16 if bf16 else torch.float16)
    return Precision(device.type, AUTOCAST_DTYPES[precision])
