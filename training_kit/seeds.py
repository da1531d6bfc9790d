"""Per-step randomness for both trainers: each step draws from generators seeded by (seed, step, ...),
never from a stream that runs through the whole run, so a run continued from a saved step draws
exactly what the uninterrupted run would have drawn."""

from __future__ import annotations

import hashlib


def step_seed(seed: int, step: int, micro: int, stream: int) -> int:
    """Independent, reproducible seed per (step, micro-batch, stream): streams (e.g. StyleForge's
    StyleRef and Aux draws, InST's data draws and dropout) never depend on one another."""
    digest = hashlib.sha256(f"{seed}/{step}/{micro}/{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1
