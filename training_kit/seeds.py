"""Per-step randomness for both trainers: each step draws from generators seeded by (seed, step, ...),
never from a stream that runs through the whole run, so a run continued from a saved step draws
exactly what the uninterrupted run would have drawn."""

from __future__ import annotations

import contextlib
import hashlib

import torch


def step_seed(seed: int, step: int, micro: int, stream: int) -> int:
    """Independent, reproducible seed per (step, micro-batch, stream): streams (e.g. StyleForge's
    StyleRef and Aux draws, InST's data draws and dropout) never depend on one another."""
    digest = hashlib.sha256(f"{seed}/{step}/{micro}/{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def global_rng_kept() -> contextlib.AbstractContextManager:
    """torch's global random state put back when the block ends, the CPU's and, once CUDA is in use,
    every GPU's: `torch.manual_seed` inside seeds them all, and the nodes after training must draw as
    if it had not run."""
    return torch.random.fork_rng(devices=range(torch.cuda.device_count()) if torch.cuda.is_initialized() else [])
