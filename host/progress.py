"""The node's progress bar, its text and preview, and Cancel."""

from __future__ import annotations

import comfy.model_management
import comfy.utils
from PIL import Image

PREVIEW_MAX_SIDE = 512
Cancelled = comfy.model_management.InterruptProcessingException  # what Cancel raises inside a run


class StepProgress:
    """ComfyUI's progress bar for one node, with the live loss as text and optional preview images.
    Every update also checks Cancel: the progress hook raises ComfyUI's interrupt exception."""

    def __init__(self, total: int):
        self.bar = comfy.utils.ProgressBar(total)
        self.total = total

    def update(self, step: int, text: str | None = None, preview: Image.Image | None = None) -> None:
        comfy.model_management.throw_exception_if_processing_interrupted()
        self.bar.update_absolute(step, self.total, ("JPEG", preview, PREVIEW_MAX_SIDE) if preview else None)
        if text:
            _send_progress_text(text)

    def say(self, text: str) -> None:
        """Text on the node without moving the bar or checking Cancel (what is being prepared, or why
        the run stopped)."""
        _send_progress_text(text)


def _send_progress_text(text: str) -> None:
    from comfy_execution.utils import get_executing_context

    context = get_executing_context()
    if context is None:  # not inside the server's executor (tests, benchmarks)
        return
    from server import PromptServer

    PromptServer.instance.send_progress_text(text, context.node_id)
