"""The optimizer's state beside a checkpoint, so that resuming continues the run exactly: AdamW's
moments and step count (its bias correction depends on it) and the fp16 loss scale. Without them a
resumed run restarts AdamW from zero moments, and its next steps are several times larger than the
uninterrupted run's.

The file sits beside the checkpoint as `<name>.optimizer`, in safetensors format (read without
unpickling): ComfyUI lists only model extensions in its folders, so it never shows up as a model.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .files import atomic_save_safetensors, read_safetensors

SUFFIX = ".optimizer"
FORMAT = "optimizer-state-1"
STEP = "step"  # torch's optimizers keep their step count under this key


def state_path(checkpoint: Path) -> Path:
    return checkpoint.with_suffix(SUFFIX)


def save_optimizer_state(optimizer: torch.optim.Optimizer, named: dict[str, torch.nn.Parameter],
                         scaler: torch.amp.GradScaler, training_step: int, path: Path) -> Path:
    """Every per-parameter state tensor under '<parameter name>/<key>'; the step count, the training
    step it belongs to and the loss scaler's state in the metadata."""
    tensors, steps = {}, set()
    for name, param in named.items():
        for key, value in optimizer.state.get(param, {}).items():
            if key == STEP:
                steps.add(float(value))
            else:
                tensors[f"{name}/{key}"] = value
    metadata = {"format": FORMAT, "training_step": str(training_step), "optimizer_steps": json.dumps(sorted(steps)),
                "scaler": json.dumps(scaler.state_dict())}
    return atomic_save_safetensors(tensors, path, metadata)


def restore_optimizer_state(optimizer: torch.optim.Optimizer, named: dict[str, torch.nn.Parameter],
                            scaler: torch.amp.GradScaler, training_step: int, path: Path, input_name: str) -> bool:
    """Load the state saved for `training_step` beside a checkpoint. False (nothing changed) when there
    is none, or it belongs to another step or other parameters; the run then restarts the moments."""
    if not path.exists():
        return False
    tensors, metadata = read_safetensors(path, input_name, "Delete it to resume without it.", suffix=SUFFIX)
    steps = json.loads(metadata.get("optimizer_steps", "[]"))
    if metadata.get("format") != FORMAT or metadata.get("training_step") != str(training_step) or len(steps) != 1:
        return False
    states: dict[torch.nn.Parameter, dict] = {}
    for name, param in named.items():
        entries = {key.split("/", 1)[1]: value for key, value in tensors.items() if key.split("/", 1)[0] == name}
        if not entries or any(value.shape != param.shape for value in entries.values()):
            return False
        states[param] = {STEP: torch.tensor(steps[0]),
                         **{key: value.to(param.device, param.dtype) for key, value in entries.items()}}
    if len(tensors) != sum(len(s) - 1 for s in states.values()):
        return False
    optimizer.state.update(states)
    saved_scaler = json.loads(metadata.get("scaler", "{}"))
    if saved_scaler and scaler.is_enabled():
        scaler.load_state_dict(saved_scaler)
    return True
