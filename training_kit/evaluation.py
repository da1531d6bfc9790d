"""The fixed evaluation set behind every "eval loss before -> after" both trainers report.

The per-step training loss is noisy (a random timestep and noise each step), so progress is measured
on a fixed set instead: each batch of clean latents at every timestep of EVAL_TIMESTEPS (the centres
of five equal bins of SD's 1000 training timesteps), with noise drawn from a generator seeded with
EVAL_SEED (a trainer turns its own dropout off for it). The same set before and after training makes
the two numbers comparable, and equal inputs give equal numbers across runs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

EVAL_TIMESTEPS = (100, 300, 500, 700, 900)
EVAL_SEED = 1234

# (batch index, its latents, timesteps, noise) -> per-sample loss of that batch
BatchLoss = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@torch.no_grad()
def fixed_set_loss(batches: list[torch.Tensor], loss: BatchLoss) -> float:
    """Mean per-sample loss over `batches` (clean latents) at every evaluation timestep."""
    generator = torch.Generator().manual_seed(EVAL_SEED)
    total, count = 0.0, 0
    for index, latents in enumerate(batches):
        for t in EVAL_TIMESTEPS:
            noise = torch.randn(latents.shape, generator=generator).to(latents.device)
            total += float(loss(index, latents, torch.full((latents.shape[0],), t), noise).sum())
            count += latents.shape[0]
    return total / count
