"""Which ComfyUI this package runs in, and the error for a host that is not what the trainers assume.

The trainers reach under ComfyUI's public node API (they make its frozen models trainable), so a
ComfyUI outside the tested range may have moved what they rely on; docs/comfyui_host.md lists each
assumption. They check the actual models before the first step and stop with `HostMismatch`
instead of training wrongly."""

from __future__ import annotations

import logging
import re

TESTED_RANGE = ("0.3.75", "0.3.75")  # the lowest and highest ComfyUI the suite has run on


def comfyui_version() -> str:
    try:
        import comfyui_version  # ComfyUI's own version file, at the root of its folder
    except ImportError:
        return "unknown"
    return str(comfyui_version.__version__)


def _numbers(version: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", version)[:3])


def in_tested_range(version: str) -> bool:
    low, high = TESTED_RANGE
    return bool(_numbers(version)) and _numbers(low) <= _numbers(version) <= _numbers(high)


def log_host() -> None:
    """One start-up line: the ComfyUI version and whether the suite has run on it."""
    version, (low, high) = comfyui_version(), TESTED_RANGE
    tested = f"{low}" if low == high else f"{low} to {high}"
    if in_tested_range(version):
        logging.info("InST + StyleForge: ComfyUI %s (tested: %s).", version, tested)
    else:
        logging.warning("InST + StyleForge: ComfyUI %s is outside the tested range (%s); the trainers check "
                        "the loaded models before their first step and stop with a message if something they "
                        "rely on has changed.", version, tested)


class HostMismatch(RuntimeError):
    """ComfyUI is not what the trainers assume: what was found and what to do, said before anything
    was trained or written."""

    def __init__(self, found: str, fix: str):
        low, high = TESTED_RANGE
        tested = low if low == high else f"{low} to {high}"
        super().__init__(f"ComfyUI {comfyui_version()} (tested: {tested}): {found} {fix} Nothing was trained or "
                         "written.")
