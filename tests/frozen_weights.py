"""Did training leave the frozen models' weights bit for bit as they were?

Compared as raw bytes, not with torch.equal: ComfyUI leaves weights a checkpoint does not provide
uninitialised (SD1.5's CLIP text_projection is dropped on load), and NaN in such memory never
equals itself.
"""

import torch


def snapshot(modules: dict[str, torch.nn.Module]) -> dict[str, dict[str, torch.Tensor]]:
    return {name: {k: v.detach().clone() for k, v in m.state_dict().items()} for name, m in modules.items()}


def _bytes(t: torch.Tensor) -> torch.Tensor:
    return t.detach().contiguous().reshape(-1).view(torch.uint8)


def changed_weights(before: dict[str, dict[str, torch.Tensor]], modules: dict[str, torch.nn.Module]) -> list[str]:
    changed = []
    for name, module in modules.items():
        after = module.state_dict()
        changed += [f"{name}.{k}" for k, v in before[name].items() if not torch.equal(_bytes(v), _bytes(after[k]))]
    return changed
