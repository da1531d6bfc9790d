"""What a training run shows while it runs: the live loss on the node's progress bar, a preview sample
every N steps, and Cancel (every update asks ComfyUI whether the user pressed it)."""

from __future__ import annotations

from collections.abc import Callable

from PIL import Image

from .. import comfy_adapter as host

PREVIEW_STEPS, PREVIEW_CFG = 12, 5.0  # a quick euler sample against the empty prompt


def preview_sample(model, clip, vae, positive: list, latent_shape: tuple[int, ...], seed: int) -> Image.Image:
    """A small txt2img sample of `positive` on the model as it is now (trained weights included)."""
    return host.preview_image(model, clip, vae, positive, latent_shape, seed, PREVIEW_STEPS, PREVIEW_CFG)


class TrainingProgress:
    """`bar` is the node's progress bar (None outside the server: no display, no Cancel);
    `make_preview` samples the model as it is now."""

    def __init__(self, bar: host.StepProgress | None, steps: int, preview_every: int,
                 make_preview: Callable[[], Image.Image]):
        self.bar, self.steps, self.preview_every, self.make_preview = bar, steps, preview_every, make_preview

    def update(self, step: int, loss: float, terms: dict[str, float] | None = None) -> None:
        """Show step `step`'s loss (and its named terms); raises ComfyUI's interrupt on Cancel."""
        if self.bar is None:
            return
        shown = f"step {step}/{self.steps}  loss {loss:.4f}"
        if terms:
            shown += " (" + ", ".join(f"{name} {value:.4f}" for name, value in terms.items()) + ")"
        due = self.preview_every and step % self.preview_every == 0
        self.bar.update(step, shown, self.make_preview() if due else None)
