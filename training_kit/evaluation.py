"""The fixed evaluation set behind every "eval loss before -> after" both trainers report.

The per-step training loss is noisy (a random timestep and noise each step), so progress is measured
on a fixed set instead: each batch of clean latents at every noise level of EVAL_TIMES (the centres of
five equal bins of the model's training range: SD's timesteps 100 ... 900 of 1000, a flow model's
times 0.1 ... 0.9 before its shift), with noise drawn from a generator seeded with
EVAL_SEED (a trainer turns its own dropout off for it). The same set before and after training makes
the two numbers comparable, and equal inputs give equal numbers across runs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .. import host

EVAL_TIMES = (0.1, 0.3, 0.5, 0.7, 0.9)
EVAL_SEED = 1234

# (batch index, its latents, timesteps, noise) -> per-sample loss of that batch
BatchLoss = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@torch.no_grad()
def fixed_set_loss(model, batches: list[torch.Tensor], loss: BatchLoss) -> float:
    """Mean per-sample loss over `batches` (clean latents) at every evaluation noise level."""
    generator = torch.Generator().manual_seed(EVAL_SEED)
    total, count = 0.0, 0
    for index, latents in enumerate(batches):
        for time in EVAL_TIMES:
            noise = torch.randn(latents.shape, generator=generator).to(latents.device)
            timesteps = host.diffusion.timesteps_at(model, torch.full((latents.shape[0],), time))
            total += float(loss(index, latents, timesteps, noise).sum())
            count += latents.shape[0]
    return total / count
