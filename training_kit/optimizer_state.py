"""The optimizer's state beside a checkpoint, so that resuming continues the run exactly: AdamW's
moments and step count (its bias correction depends on it) and the fp16 loss scale. Without them a
resumed run restarts AdamW from zero moments, and its next steps are several times larger than the
uninterrupted run's.

The file sits beside the checkpoint as `<name>.optimizer`, in safetensors format (read without
unpickling): ComfyUI lists only model extensions in its folders, so it never shows up as a model.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from .files import atomic_save_safetensors, read_safetensors

SUFFIX = ".optimizer"
FORMAT = "optimizer-state-1"
STEP = "step"  # torch's optimizers keep their step count under this key


def state_path(checkpoint: Path) -> Path:
    return checkpoint.with_suffix(SUFFIX)


def tensors_fingerprint(tensors: dict[str, torch.Tensor]) -> str:
    """A hash of a checkpoint's tensors (names, dtypes, values), so optimizer state is only ever paired
    with the exact weights it was saved with."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().contiguous().cpu()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


@dataclass(frozen=True)
class OptimizerState:
    """What AdamW and the loss scaler know at one step, taken from the live optimizer so it can travel
    with the weights (a StyleForge LoRA to its save node) and be written beside them later."""

    tensors: dict[str, torch.Tensor]  # '<parameter name>/<key>' -> moment
    steps: list[float]
    scaler: dict


def optimizer_state(optimizer: torch.optim.Optimizer, named: dict[str, torch.nn.Parameter],
                    scaler: torch.amp.GradScaler) -> OptimizerState:
    """Every per-parameter state tensor under '<parameter name>/<key>' (a parameter that never had a
    gradient has none, as in the optimizer), the step count and the loss scaler's state."""
    tensors, steps = {}, set()
    for name, param in named.items():
        for key, value in optimizer.state.get(param, {}).items():
            if key == STEP:
                steps.add(float(value))
            else:
                tensors[f"{name}/{key}"] = value.detach().to("cpu", copy=True)
    return OptimizerState(tensors, sorted(steps), scaler.state_dict())


def save_optimizer_state(state: OptimizerState, checkpoint_tensors: dict[str, torch.Tensor], path: Path) -> Path:
    """`state` with the fingerprint of the checkpoint it belongs to, as that checkpoint's tensors will
    be read back (`checkpoint_tensors`)."""
    metadata = {"format": FORMAT, "checkpoint": tensors_fingerprint(checkpoint_tensors),
                "optimizer_steps": json.dumps(state.steps), "scaler": json.dumps(state.scaler)}
    return atomic_save_safetensors(state.tensors, path, metadata)


def restore_optimizer_state(optimizer: torch.optim.Optimizer, named: dict[str, torch.nn.Parameter],
                            scaler: torch.amp.GradScaler, checkpoint_tensors: dict[str, torch.Tensor], path: Path,
                            input_name: str) -> bool:
    """Load the state saved with exactly `checkpoint_tensors`. False, with nothing changed, when there
    is none, or it belongs to other weights or parameters; the run then restarts the moments."""
    if not path.exists():
        return False
    tensors, metadata = read_safetensors(path, input_name, "Delete it to resume without it.", suffix=SUFFIX)
    try:
        steps = json.loads(metadata.get("optimizer_steps", "[]"))
        saved_scaler = json.loads(metadata.get("scaler", "{}"))
    except json.JSONDecodeError:
        return False
    if (metadata.get("format") != FORMAT or metadata.get("checkpoint") != tensors_fingerprint(checkpoint_tensors)
            or len(steps) != (1 if tensors else 0)):
        return False
    by_parameter: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        name, _, entry = key.partition("/")
        by_parameter.setdefault(name, {})[entry] = value
    if set(by_parameter) - set(named) or any(value.shape != named[name].shape
                                             for name, entries in by_parameter.items() for value in entries.values()):
        return False
    for name, entries in by_parameter.items():
        param = named[name]
        optimizer.state[param] = {STEP: torch.tensor(steps[0]),
                                  **{key: value.to(param.device, param.dtype) for key, value in entries.items()}}
    if saved_scaler and scaler.is_enabled():
        scaler.load_state_dict(saved_scaler)
    return True
