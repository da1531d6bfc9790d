"""Memory settings both trainers share: when to recompute activations instead of keeping them, and
what a user sees when a run does not fit (the settings to change, never a raw out-of-memory traceback).
"""

from __future__ import annotations

import contextlib
import traceback
from collections.abc import Iterator

from .. import host
from .errors import InputError

GRADIENT_CHECKPOINTING = ("auto", "on", "off")
# From this resolution "auto" recomputes the UNet's activations in backward: at 512 px they are the
# bulk of a training step's memory (several GB for SD1.5 in fp16, more for SDXL at 1024 px), and
# recomputing them costs one more forward per step (bench/styleforge_bench.py --full --sizes 512, runners
# styleforge_separate and styleforge_gc, measures both); below it they are small and checkpointing only
# costs time.
GRADIENT_CHECKPOINTING_FROM = 512
CHECKPOINTING_TOOLTIP = (f"Recompute the UNet's activations in backward: much less memory, one more forward "
                         f"per step. auto: on from {GRADIENT_CHECKPOINTING_FROM} px.")


def gradient_checkpointing_on(setting: str, resolution: int) -> bool:
    """Whether a run at `resolution` px checkpoints the UNet, for the `gradient_checkpointing` input."""
    if setting not in GRADIENT_CHECKPOINTING:
        raise InputError("gradient_checkpointing", f"'{setting}' is not one of {list(GRADIENT_CHECKPOINTING)}.")
    return setting == "on" or (setting == "auto" and resolution >= GRADIENT_CHECKPOINTING_FROM)


@contextlib.contextmanager
def clear_out_of_memory(resolution: int, batch_size: int, checkpointing: bool, precision: str,
                        kept: str) -> Iterator[None]:
    """Turn running out of memory inside the block into an error naming the settings that set a
    training step's memory, after freeing what the failed step held (so the server and the next node
    go on). `kept` says what the user still has."""
    try:
        yield
        return
    except Exception as error:
        if not host.memory.is_out_of_memory(error):
            raise
        traceback.clear_frames(error.__traceback__)  # the failed step's activations
    host.memory.free_memory_after_out_of_memory()
    state = "on" if checkpointing else "off"
    raise InputError("resolution", f"training at {resolution} px, batch_size {batch_size}, gradient_checkpointing "
                     f"{state}, precision {precision} does not fit in memory; {kept}",
                     "Lower resolution or batch_size, set gradient_checkpointing to on, use precision fp16 or "
                     "bf16 on a GPU, or close other models and programs that use the memory.")
