"""LoRA adapters on the frozen layers of ComfyUI's loaded UNet and text encoder.

Each adapter is attached with a forward hook that adds `scale * up(down(x))` to the frozen layer's
output, in place. ComfyUI's own trainer instead wraps the weight (`weight_function`) and rebuilds
W + BA for every layer on every forward; the hook costs two thin matmuls and leaves the base weights
untouched.
For saving, the same adapters are written as kohya `lora_down` / `lora_up` / `alpha` tensors, which
stock LoraLoader merges into the weights (W + alpha/rank * up @ down): the same function.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..training_kit.errors import InputError
from ..training_kit.seeds import global_rng_kept

UNET_PREFIX = "lora_unet_"
TEXT_ENCODER_PREFIX = "lora_te"
DOWN, UP, ALPHA = ".lora_down.weight", ".lora_up.weight", ".alpha"


class LoRAAdapter(nn.Module):
    """down (rank x in) then up (out x rank), scaled by alpha / rank; up starts at zero, so a new
    adapter leaves the layer's output exactly as it was."""

    def __init__(self, layer: nn.Module, rank: int, alpha: float):
        super().__init__()
        factory = {"device": layer.weight.device, "dtype": torch.float32}
        if isinstance(layer, nn.Conv2d):
            self.down = nn.Conv2d(layer.in_channels, rank, layer.kernel_size, layer.stride, layer.padding,
                                  layer.dilation, bias=False, **factory)
            self.up = nn.Conv2d(rank, layer.out_channels, 1, bias=False, **factory)
        else:
            self.down = nn.Linear(layer.in_features, rank, bias=False, **factory)
            self.up = nn.Linear(rank, layer.out_features, bias=False, **factory)
        nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
        nn.init.zeros_(self.up.weight)
        self.rank = rank
        self.alpha = float(alpha)

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        """scale * up(down(x)), in the dtype of the layer's input: the thin weights are cast, not x, so
        backward keeps the layer's own input (shared by the adapters of q, k and v) rather than a
        converted copy of it per adapter. The scale multiplies up's thin weight, not the layer-sized
        output."""
        down = self.down.weight.to(x.dtype)
        up = (self.up.weight * self.scale).to(x.dtype)
        if isinstance(self.down, nn.Conv2d):
            h = F.conv2d(x, down, None, self.down.stride, self.down.padding, self.down.dilation)
            return F.conv2d(h, up)
        return F.linear(F.linear(x, down), up)

    def hook(self, _layer: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        """Adds the delta to the frozen layer's output in place. A linear or convolution does not keep
        its output for backward, so this is safe (autograd would refuse it otherwise), and it spares
        a layer-sized buffer per adapted layer (less peak memory; bench/styleforge_bench.py reports it)."""
        return output.add_(self.delta(args[0]).to(output.dtype))


def largest_rank(layer: nn.Module) -> int:
    """A rank above min(out, in x kernel) adds parameters but no expressiveness."""
    weight = layer.weight
    return min(weight.shape[0], weight[0].numel())


def check_rank(targets: dict[str, nn.Module], rank: int) -> None:
    name, layer = min(targets.items(), key=lambda item: largest_rank(item[1]))
    if rank > largest_rank(layer):
        raise InputError("rank", f"{rank} is larger than layer {name} allows ({largest_rank(layer)}: its "
                         f"weight is {tuple(layer.weight.shape)}).", f"Use a rank of at most {largest_rank(layer)}.")


class LoRANetwork(nn.Module):
    """The adapters of one training run, keyed by kohya name (no dots, so usable as module names)."""

    def __init__(self, targets: dict[str, nn.Module], rank: int, alpha: float, seed: int):
        super().__init__()
        check_rank(targets, rank)
        with global_rng_kept():
            torch.manual_seed(seed)
            self.adapters = nn.ModuleDict({name: LoRAAdapter(layer, rank, alpha) for name, layer in targets.items()})
        self.rank, self.alpha = rank, float(alpha)

    @contextlib.contextmanager
    def attached(self, targets: dict[str, nn.Module]) -> Iterator[None]:
        """Hooks on the frozen layers for as long as the context lasts, removed even on Cancel."""
        handles = [targets[name].register_forward_hook(adapter.hook) for name, adapter in self.adapters.items()]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def parameter_groups(self, unet_lr: float, text_encoder_lr: float) -> list[dict]:
        groups = {UNET_PREFIX: (unet_lr, []), TEXT_ENCODER_PREFIX: (text_encoder_lr, [])}
        for name, adapter in self.adapters.items():
            groups[UNET_PREFIX if name.startswith(UNET_PREFIX) else TEXT_ENCODER_PREFIX][1].extend(adapter.parameters())
        return [{"params": params, "lr": lr} for lr, params in groups.values() if params]

    def kohya_state(self) -> dict[str, torch.Tensor]:
        """Detached fp32 copies on the CPU, in kohya key names."""
        state = {}
        for name, adapter in self.adapters.items():
            state[name + DOWN] = adapter.down.weight.detach().float().cpu().clone()
            state[name + UP] = adapter.up.weight.detach().float().cpu().clone()
            state[name + ALPHA] = torch.tensor(adapter.alpha)
        return state

    def load_kohya_state(self, state: dict[str, torch.Tensor], input_name: str) -> None:
        """Continue from saved weights; every adapter must be in the file and nothing else."""
        expected = {name + suffix for name in self.adapters for suffix in (DOWN, UP, ALPHA)}
        if set(state) != expected:
            missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
            raise InputError(input_name, f"does not fit this model's layers (missing {missing[:3]}, unexpected "
                             f"{extra[:3]}).", "Resume only from a StyleForge LoRA of the same model.")
        for name, adapter in self.adapters.items():
            for key, weight in ((name + DOWN, adapter.down.weight), (name + UP, adapter.up.weight)):
                if state[key].shape != weight.shape:
                    raise InputError(input_name, f"holds {key} of shape {tuple(state[key].shape)}, but rank "
                                     f"{self.rank} on this layer needs {tuple(weight.shape)}.",
                                     "The file is damaged or its rank is wrong; resume from a LoRA this trainer "
                                     "saved, or pick [none].")
        with torch.no_grad():
            for name, adapter in self.adapters.items():
                adapter.down.weight.copy_(state[name + DOWN])
                adapter.up.weight.copy_(state[name + UP])

