"""The StyleForge LoRA file: kohya key names in a safetensors file with the training's metadata.

Metadata values are strings (safetensors' rule); structured ones are JSON. Resume reads the step
count and network settings from here, never from the file name. `ss_network_dim` / `ss_network_alpha`
are also written, under kohya's names, so other tools show the rank and alpha.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..training_kit.errors import InputError
from ..training_kit.files import atomic_save_safetensors, int_in_range, read_safetensors
from ..training_kit.optimizer_state import OptimizerState, save_optimizer_state, state_path

METHODS = ("Single", "Multi")
LORA_FOLDER = "loras"
MAX_RANK = 4096
FORMAT = "styleforge-lora-1"
SAVE_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


@dataclass
class StyleForgeLoRA:
    """kohya tensors (fp32, CPU) and the training's metadata, as passed between nodes."""

    tensors: dict[str, torch.Tensor]
    metadata: dict = field(default_factory=dict)
    path: Path | None = None  # the file it was loaded from (resume looks for its optimizer state beside it)
    optimizer: OptimizerState | None = None  # AdamW's state when it was trained, written beside the file

    @property
    def steps(self) -> int:
        return int(self.metadata["steps"])

    @property
    def family(self) -> str:
        return self.metadata["base_model_family"]


def _to_strings(metadata: dict) -> dict[str, str]:
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}


def _from_strings(metadata: dict[str, str]) -> dict:
    def parse(value: str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value

    return {k: parse(v) for k, v in metadata.items()}


def save_lora(lora: StyleForgeLoRA, path: Path, precision: str = "fp16") -> Path:
    """Atomic write (temporary file, then rename): a checkpoint interrupted by Cancel or a crash leaves
    the previous file intact and no partial one. The optimizer state, when the LoRA carries it, goes
    beside it after it, paired with the tensors as they will be read back, so a resume from this file
    (a checkpoint or the finished LoRA) continues AdamW instead of restarting it; a LoRA write that
    fails leaves the previous pair as it was."""
    dtype = SAVE_DTYPES[precision]
    tensors = {k: v.to(dtype) for k, v in lora.tensors.items()}
    metadata = {**lora.metadata, "format": FORMAT, "save_precision": precision,
                "ss_network_dim": lora.metadata.get("rank"), "ss_network_alpha": lora.metadata.get("alpha")}
    atomic_save_safetensors(tensors, path, _to_strings(metadata))
    if lora.optimizer is not None:
        save_optimizer_state(lora.optimizer, {k: v.float() for k, v in tensors.items()}, state_path(path))
    return path


def load_lora(path: Path, input_name: str) -> StyleForgeLoRA:
    tensors, metadata = read_safetensors(path, input_name, "Pick another file.")
    if metadata.get("format") != FORMAT:
        raise InputError(input_name, f"'{path.name}' is not a StyleForge LoRA (its step count and settings are "
                         "unknown).", "Resume only from a file this trainer saved, or pick [none].")
    settings = _from_strings(metadata)
    wrong = _wrong_settings(settings)
    if wrong:
        raise InputError(input_name, f"'{path.name}' has missing or invalid metadata {wrong}, which resuming needs.",
                         "Resume only from a file this trainer saved, or pick [none].")
    return StyleForgeLoRA({k: v.float() for k, v in tensors.items()}, settings, path)


def _wrong_settings(metadata: dict) -> list[str]:
    """The metadata fields a resume reads that are missing or of the wrong type (the file is untrusted)."""
    alpha = metadata.get("alpha")
    checks = {
        "method": metadata.get("method") in METHODS,
        "base_model_family": isinstance(metadata.get("base_model_family"), str),
        "steps": int_in_range(metadata.get("steps"), 0, 10**9),
        "rank": int_in_range(metadata.get("rank"), 1, MAX_RANK),
        "alpha": isinstance(alpha, (int, float)) and not isinstance(alpha, bool) and 0 <= alpha <= 1e6,
        "include_conv": isinstance(metadata.get("include_conv"), bool),
        "train_text_encoder": isinstance(metadata.get("train_text_encoder"), bool),
    }
    return [name for name, ok in checks.items() if not ok]


def require_family(lora: StyleForgeLoRA, family: str, input_name: str) -> None:
    if lora.family != family:
        raise InputError(input_name, f"was trained on a {lora.family} model, but the model connected is {family}.",
                         f"Resume from a LoRA trained on {family}, or pick [none] to start a new one.")
