"""Memory: handing back what training freed, and recognising and recovering from out-of-memory errors."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import sys

import comfy.model_management

# How out-of-memory reads where it is a plain RuntimeError: the CPU allocator, Apple's MPS, CUDA (older torch).
OUT_OF_MEMORY_TEXTS = ("DefaultCPUAllocator: can't allocate memory", "MPS backend out of memory",
                       "CUDA out of memory")


def hand_back_memory() -> None:
    """Return what training freed to the device and the OS: ComfyUI empties the GPU's cache; on Linux,
    glibc keeps freed CPU memory for reuse unless asked to trim it, so the process would stay at its
    training peak for every node that runs after."""
    gc.collect()
    comfy.model_management.soft_empty_cache()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)


def is_out_of_memory(error: BaseException) -> bool:
    """The device (ComfyUI's OOM exception: CUDA's out-of-memory error) or the CPU allocator ran out."""
    return (comfy.model_management.OOM_EXCEPTION is not Exception
            and isinstance(error, comfy.model_management.OOM_EXCEPTION)) or (
        isinstance(error, RuntimeError) and any(text in str(error) for text in OUT_OF_MEMORY_TEXTS))


def free_memory_after_out_of_memory() -> None:
    """What ComfyUI's executor does after an out-of-memory error (unload every model), then hand back."""
    comfy.model_management.unload_all_models()
    hand_back_memory()
