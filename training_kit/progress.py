"""What a training run shows while it runs: the live loss on the node's progress bar, the validation
rounds (their first image on the node, their score in the text), and Cancel (every update asks
ComfyUI whether the user pressed it)."""

from __future__ import annotations

from .. import host
from .validation import Validator


class TrainingProgress:
    """`bar` is the node's progress bar (None outside the server: no display, no Cancel);
    `validator` runs the validation rounds (None: no validation)."""

    def __init__(self, bar: host.progress.StepProgress | None, steps: int, validator: Validator | None = None):
        self.bar, self.steps, self.validator = bar, steps, validator

    def say(self, text: str) -> None:
        """Text on the node that is not a step: what is being prepared, why the run stopped."""
        if self.bar is not None:
            self.bar.say(text)

    def start(self, step: int) -> None:
        """Validate the weights training starts from (step 0, or the step a resumed run starts at)."""
        if self.validator is not None:
            round_ = self.validator.run(step)
            self._show(step, "validation before training" + _score_text(round_.score), round_.images[0])

    def update(self, step: int, loss: float, terms: dict[str, float] | None = None) -> None:
        """Show step `step`'s loss (and its named terms), validating when due; raises ComfyUI's
        interrupt on Cancel."""
        shown = f"step {step}/{self.steps}  loss {loss:.4f}"
        if terms:
            shown += " (" + ", ".join(f"{name} {value:.4f}" for name, value in terms.items()) + ")"
        preview = None
        if self.validator is not None and self.validator.due(step):
            round_ = self.validator.run(step)
            shown += _score_text(round_.score)
            preview = round_.images[0]
        self._show(step, shown, preview)

    def _show(self, step: int, text: str, preview) -> None:
        if self.bar is not None:
            self.bar.update(step, text, preview)


def _score_text(score: float | None) -> str:
    return f"  CLIP-I {score:.3f}" if score is not None else ""
