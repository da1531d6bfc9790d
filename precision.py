"""Training precision, shared by both trainers: fp16/bf16 autocast on a GPU, fp32 on the CPU (where
autocast is several times slower, so asking for it there is refused rather than silently slow)."""

from __future__ import annotations

import contextlib

import torch

from .errors import InputError

AUTOCAST_DTYPES = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def autocast_dtype(device: torch.device, precision: str) -> torch.dtype | None:
    """The autocast dtype for `precision` ("auto" picks bf16 where supported, else fp16; fp32 on the
    CPU), or None for plain fp32."""
    if device.type == "cpu":
        if AUTOCAST_DTYPES.get(precision) is not None:
            raise InputError("precision", f"{precision} autocast is for GPUs; on a CPU it is several times slower.",
                             "Use fp32 (or auto) on the CPU.")
        return None
    if precision == "auto":
        bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if bf16 else torch.float16
    return AUTOCAST_DTYPES[precision]


def autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()
