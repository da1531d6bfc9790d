"""Validation while training, shared by both trainers.

Every `every` steps (and before the first step and at the last) the model as it is then draws one image per
validation prompt, each with a fixed seed, so rounds differ only by the training between them. The
images are saved to ComfyUI's output folder with the step in their names. With a CLIP vision model,
each round also gets a style-similarity score: the mean cosine similarity between the CLIP image
embeddings of its images and of the reference images (CLIP-I, as reported by DreamBooth, Ruiz et al.,
arXiv 2208.12242, and by StyleForge's evaluation). The per-step training loss is too noisy to choose a
step by; the score and the images are what a user picks the best step from.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from .. import host
from .files import atomic_write, path_in
from .images import from_pil, to_pil
from .seeds import global_rng_kept

PREFIX_INPUT = "filename_prefix"
# Each round samples against the empty prompt with a deterministic sampler (a round's images depend
# only on the weights and the seeds) and ComfyUI's default schedule.
SAMPLER, SCHEDULER, NEGATIVE_PROMPT = "euler", "normal", ""


@dataclass(frozen=True)
class ValidationSettings:
    prompts: tuple[str, ...] = ()  # empty: the trainer's own style prompt
    every: int = 100
    seed: int = 0
    steps: int = 20
    cfg: float = 7.0
    filename_prefix: str = "validation/style"
    clip_vision: object | None = field(default=None, compare=False)  # for the score; None = no score


@dataclass
class ValidationRound:
    step: int
    images: list[Image.Image]
    files: list[Path]  # relative to the output folder
    score: float | None  # CLIP-I against the reference images, when a CLIP vision model is at hand


def validation_prompts(text: str) -> tuple[str, ...]:
    """One prompt per non-empty line."""
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def _next_run(folder: Path, base: str) -> int:
    """1 + the highest run number already in `folder` for `base`, so no run overwrites another."""
    pattern = re.compile(re.escape(base) + r"_(\d{5})_")
    runs = [int(m.group(1)) for p in folder.glob(f"{base}_*") if (m := pattern.match(p.name))]
    return max(runs, default=0) + 1


def save_png(image: Image.Image, path: Path) -> None:
    with atomic_write(path) as tmp:
        image.save(tmp, format="PNG")


@torch.no_grad()
def _unit_embeddings(clip_vision, images: list[torch.Tensor]) -> torch.Tensor:
    """L2-normalised CLIP image embeddings of `images`, in their order. Images of one size go through
    CLIP vision in one call: each call casts the whole tower's weights once, which costs about as much
    as encoding an image on a CPU."""
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for index, image in enumerate(images):
        by_shape.setdefault(tuple(image.shape[1:]), []).append(index)
    embeds: list[torch.Tensor | None] = [None] * len(images)
    for indices in by_shape.values():
        batch = torch.cat([images[i] for i in indices])
        encoded = host.images.clip_vision_embeddings(host.images.clip_vision_encode(clip_vision, batch))[0].float()
        for row, index in enumerate(indices):
            embeds[index] = encoded[row:row + 1]
    return torch.nn.functional.normalize(torch.cat(embeds), dim=-1)


class Validator:
    """Runs the rounds of one training run. `condition(prompt)` gives the CONDITIONING of a prompt
    with the weights as they are now; `references` are the training images the score compares to,
    or their CLIP image embeddings by the scoring CLIP vision when the trainer already has them.
    `clip_trains`: whether training holds the text encoder on the device (it trains, or gradients
    cross it); a frozen one is only used here, to encode the prompts."""

    def __init__(self, settings: ValidationSettings, prompts: tuple[str, ...], model, clip, vae,
                 latent_shape: tuple[int, ...], condition: Callable[[str], list],
                 references: list[torch.Tensor] | torch.Tensor, last_step: int, clip_trains: bool = True):
        output = host.files.output_directory()
        target = path_in(output, settings.filename_prefix, PREFIX_INPUT, suffix=".png")
        base = target.name[: -len(".png")]
        self.run_name = target.parent / f"{base}_{_next_run(target.parent, base):05}"
        self.output, self.settings, self.prompts = output, settings, prompts
        self.model, self.clip, self.vae, self.latent_shape = model, clip, vae, latent_shape
        self.condition, self.last_step, self.clip_trains = condition, last_step, clip_trains
        self.clip_vision = settings.clip_vision
        self.references = None
        if isinstance(references, torch.Tensor):
            self.references = torch.nn.functional.normalize(references.float(), dim=-1).cpu()
        elif self.clip_vision is not None:
            self.references = _unit_embeddings(self.clip_vision, references)
        self.rounds: list[ValidationRound] = []

    def due(self, step: int) -> bool:
        return step == self.last_step or step % self.settings.every == 0

    def run(self, step: int) -> ValidationRound:
        """One image per prompt (seed, seed + 1, ...), saved; scored when a CLIP vision model is set.
        The global random state is left as it was, and while training goes on the models are loaded
        for training again, so validating does not change training."""
        images, files = [], []
        with global_rng_kept(), torch.no_grad():
            negative = host.text.encode_tokens(self.clip, host.text.tokenize(self.clip, NEGATIVE_PROMPT))
            for k, prompt in enumerate(self.prompts):
                image = to_pil(host.sampling.txt2img(self.model, self.vae, self.condition(prompt), negative,
                                                     self.latent_shape, self.settings.seed + k, self.settings.steps,
                                                     self.settings.cfg, SAMPLER, SCHEDULER))
                path = self.run_name.parent / f"{self.run_name.name}_step{step:06}_{k + 1}.png"
                save_png(image, path)
                images.append(image)
                files.append(path.relative_to(self.output))
            score = self._score(images)
        if step < self.last_step:  # the last round has no training after it
            host.trainable.load_for_training(self.model, self.clip if self.clip_trains else None)
        self.rounds.append(ValidationRound(step, images, files, score))
        return self.rounds[-1]

    def _score(self, images: list[Image.Image]) -> float | None:
        if self.references is None:
            return None
        generated = _unit_embeddings(self.clip_vision, [from_pil(image) for image in images])
        return float((generated @ self.references.to(generated.device).T).mean())

    def scores(self) -> list[tuple[int, float]]:
        return [(r.step, r.score) for r in self.rounds if r.score is not None]

    def best(self) -> ValidationRound | None:
        scored = [r for r in self.rounds if r.score is not None]
        return max(scored, key=lambda r: r.score) if scored else None

    def summary(self) -> str:
        """For the node: where the images are, and the best step by score."""
        text = f"validation images: output/{self.run_name.relative_to(self.output)}_step*.png"
        best, first = self.best(), self.rounds[0] if self.rounds else None
        if best is not None and first is not None and first.score is not None:
            text += f"; CLIP-I {first.score:.3f} at step {first.step}, best {best.score:.3f} at step {best.step}"
        return text

    def save_curve(self, curve: Image.Image) -> Path:
        path = self.run_name.parent / f"{self.run_name.name}_curve.png"
        save_png(curve, path)
        return path.relative_to(self.output)
