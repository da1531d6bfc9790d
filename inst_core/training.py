"""InST style inversion (Zhang et al., arXiv 2211.13203): train the style encoder on one or more
paintings, everything else frozen.

Per step (the paper's defaults): pick a painting, flip it with p=0.5, draw t uniformly from the
model's timesteps and Gaussian noise, inject the encoder's token for that painting into the prompt
("*"), encode the prompt with the frozen text encoder and predict with the frozen UNet; the loss is
the MSE of the prediction in the model's own parameterisation (epsilon for SD1.x). Only the encoder's
parameters are in the optimizer, so the UNet, text encoder, VAE and CLIP vision weights stay
bit-for-bit the same. Each step's draws and dropout come from seeds of (seed, step), and a saved
style keeps AdamW's state beside it, so continuing a saved style ends where one longer run ends.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from .. import host
from ..training_kit.diffusion_loss import draw_timesteps_and_noise, prediction_mse
from ..training_kit.errors import InputError
from ..training_kit.evaluation import fixed_set_loss
from ..training_kit.files import write_failure_named
from ..training_kit.images import SampleSize, exact_size, image_sha256, require_image, resize_exact
from ..training_kit.input_rules import BATCH_SIZE, RESOLUTION, SEED, Range, check_ranges
from ..training_kit.loop import Backward, LossStop, Resume, Run, StepLoss, train, training_session
from ..training_kit.memory import gradient_checkpointing_on
from ..training_kit.model_checks import require_matching_clip, require_model_family
from ..training_kit.optimizer_state import save_optimizer_state, state_path
from ..training_kit.precision import TRAIN_IN_FP32, Precision, training_precision
from ..training_kit.progress import TrainingProgress
from ..training_kit.result import TrainingResult
from ..training_kit.seeds import global_rng_kept, step_seed
from ..training_kit.validation import ValidationSettings, Validator
from .style import CONTEXT_IMAGE_EMBED, CONTEXT_PATCH_TOKENS, ImageFeatures, InSTStyle, StyleSpec
from .style_file import save_style
from .style_prompt import INST_FAMILIES, StylePrompt, require_clip_text_encoders

FLIP_PROBABILITY = 0.5
CONTINUE_INPUT = "continue_from"
DATA_STREAM, DROPOUT_STREAM = 0, 1  # independent random streams of a step: its draws, the encoder's dropout
NOTHING_SAVED = "nothing was saved."  # what a failed or refused run leaves (the finite-loss and memory errors say it)
NOT_SAVED_AFTER_TRAINING = "The trained style was not saved (nothing was written); the same seed trains it again."


@dataclass(frozen=True)
class InSTTrainingConfig:
    steps: int = 1000
    learning_rate: float = 1e-4
    weight_decay: float = 0.01
    seed: int = 23
    resolution: int = 512
    batch_size: int = 1
    random_flip: bool = True
    attend_to: str = CONTEXT_IMAGE_EMBED
    vectors_per_token: int = 1
    attention_heads: int = 8
    dim_head: int = 64
    dropout: float = 0.05
    placeholder: str = "*"
    template: str = "{}"
    gradient_checkpointing: str = "auto"  # see training_kit.memory
    precision: str = "auto"


# The allowed values of InSTTrainingConfig's numeric settings (the node's widgets take them from here).
RANGES = {"steps": Range(1, 100000), "learning_rate": Range(1e-7, 1.0), "seed": SEED, "resolution": RESOLUTION,
          "batch_size": BATCH_SIZE, "vectors_per_token": Range(1, 16)}


@dataclass
class Paintings:
    """Training data, prepared once: model-space latents and CLIP features, plain and flipped."""

    latents: torch.Tensor  # (P, 2, C, h, w): [:, 0] as is, [:, 1] flipped
    features: list[tuple[ImageFeatures, ImageFeatures]]
    hashes: list[str]
    sizes: list[SampleSize]  # each painting's geometry (resized whole, so a flip keeps it)

    def batch(self, indices: list[int], flips: list[int]) -> tuple[torch.Tensor, ImageFeatures, list[SampleSize]]:
        picked = [self.features[i][f] for i, f in zip(indices, flips)]
        features = ImageFeatures(torch.cat([p.embed for p in picked]), torch.cat([p.patch_tokens for p in picked]))
        return self.latents[indices, flips], features, [self.sizes[i] for i in indices]


def prepare_paintings(model, vae, clip_vision, paintings: list[torch.Tensor], resolution: int) -> Paintings:
    latents, features, hashes, sizes = [], [], [], []
    # outside inference mode, so the cached tensors can enter autograd later
    with torch.inference_mode(False), torch.no_grad():
        for n, painting in enumerate(paintings):
            image = require_image(painting, "painting" if len(paintings) == 1 else f"painting #{n + 1}")[:1]
            hashes.append(image_sha256(image))
            sizes.append(exact_size(image, resolution, resolution))
            both = torch.cat([image, image.flip(2)])
            latent = host.images.vae_encode(vae, resize_exact(both, resolution, resolution))
            latents.append(host.diffusion.latent_to_model_space(model, latent.float()))
            pair = ImageFeatures.from_clip_vision_output(host.images.clip_vision_encode(clip_vision, both))  # one call
            features.append(tuple(ImageFeatures(pair.embed[i:i + 1], pair.patch_tokens[i:i + 1]) for i in (0, 1)))
        device = host.models.compute_device(model)
        features = [tuple(ImageFeatures(f.embed.to(device), f.patch_tokens.to(device)) for f in pair)
                    for pair in features]
        return Paintings(torch.stack(latents).to(device), features, hashes, sizes)


def new_style(model, clip, paintings: Paintings, config: InSTTrainingConfig) -> InSTStyle:
    family = require_model_family(model, INST_FAMILIES)
    widths = require_matching_clip(model, clip)
    first = paintings.features[0][0]
    patch_tokens = config.attend_to == CONTEXT_PATCH_TOKENS
    spec = StyleSpec(family=family, token_widths=widths, image_dim=first.embed.shape[-1], context=config.attend_to,
                     context_dim=first.patch_tokens.shape[-1] if patch_tokens else None,
                     n_vectors=config.vectors_per_token, attention_heads=config.attention_heads,
                     dim_head=config.dim_head, dropout=config.dropout)
    with global_rng_kept():
        torch.manual_seed(config.seed)
        return InSTStyle(spec).to(host.models.compute_device(model))


def continued_style(model, clip, paintings: Paintings, config: InSTTrainingConfig,
                    saved: InSTStyle) -> tuple[InSTStyle, InSTTrainingConfig, int]:
    """(a trainable copy of a saved style, the config with the encoder's shape from its file, the
    steps it has done) for a run that continues it."""
    done = int(saved.spec.training.get("steps", 0))
    if not done:
        raise InputError(CONTINUE_INPUT, "was not trained by this package's InST trainer (no step count in its "
                         "file), so there is no run to continue.", "Pick a style this trainer saved, or [none].")
    if saved.spec.family != require_model_family(model, INST_FAMILIES):
        raise InputError(CONTINUE_INPUT, f"was trained on a {saved.spec.family} model, but the model connected "
                         f"is {host.models.model_family(model)}.", "Continue it on the model it was trained "
                         "on, or pick [none].")
    saved.check_text_encoders(require_matching_clip(model, clip), "clip")
    saved.check_features(paintings.features[0][0], "clip_vision")
    if done >= config.steps:
        raise InputError("steps", f"is {config.steps}, but '{CONTINUE_INPUT}' has already been trained for {done} "
                         "steps.", f"Set steps above {done} to continue training.")
    config = replace(config, attend_to=saved.spec.context, vectors_per_token=saved.spec.n_vectors,
                     attention_heads=saved.spec.attention_heads, dim_head=saved.spec.dim_head,
                     dropout=saved.spec.dropout)
    style = InSTStyle(replace(saved.spec, training={})).to(host.models.compute_device(model))
    style.load_state_dict(saved.state_dict())
    return style.requires_grad_(True), config, done


def style_conditioning(clip, style: InSTStyle, prompt: StylePrompt, features: ImageFeatures,
                       device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The prompt's text conditioning (cross-attention features, pooled) with each batch item's style
    token in place of the placeholder."""
    vectors = style(features)
    conds, pooled = [], []
    for i in range(next(iter(vectors.values())).shape[0]):
        cond, pool = host.text.encode_tokens_for_training(clip, prompt.tokens({k: v[i] for k, v in vectors.items()}))
        conds.append(cond)
        pooled.append(pool)
    return torch.cat(conds).to(device), torch.cat(pooled).to(device) if pooled[0] is not None else None


def denoising_loss(model, clip, style: InSTStyle, prompt: StylePrompt, latents: torch.Tensor,
                   features: ImageFeatures, sizes: list[SampleSize], timesteps: torch.Tensor,
                   noise: torch.Tensor) -> torch.Tensor:
    """Mean squared error of the model's prediction, conditioned on the style token, per batch item."""
    cond, pooled = style_conditioning(clip, style, prompt, features, latents.device)
    return prediction_mse(model, latents, noise, host.diffusion.sigma_at(model, timesteps), cond, pooled, sizes)


@torch.no_grad()
def evaluation_loss(model, clip, style: InSTStyle, prompt: StylePrompt, paintings: Paintings) -> float:
    """Loss on the kit's fixed evaluation set: every painting unflipped, the encoder's dropout off. A
    painting's conditioning is the same at every evaluation timestep, so it is encoded once."""
    conditioning: dict[int, tuple[torch.Tensor, torch.Tensor | None]] = {}

    def loss(index: int, latents: torch.Tensor, timesteps: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        _, features, sizes = paintings.batch([index], [0])
        if index not in conditioning:
            conditioning[index] = style_conditioning(clip, style, prompt, features, latents.device)
        cond, pooled = conditioning[index]
        return prediction_mse(model, latents, noise, host.diffusion.sigma_at(model, timesteps), cond, pooled, sizes)

    was_training = style.training
    style.eval()
    try:
        return fixed_set_loss(model, [paintings.latents[i:i + 1, 0] for i in range(len(paintings.hashes))], loss)
    finally:
        style.train(was_training)


def validator(model, clip, vae, clip_vision, style: InSTStyle, paintings: Paintings, painting_images: list,
              config: InSTTrainingConfig, settings: ValidationSettings) -> Validator:
    """Validation rounds with the current token of the first painting; `*` in each prompt marks it.
    The score compares to the paintings, with the trainer's CLIP vision unless another is given."""
    placeholder = config.placeholder
    prompts = settings.prompts or (config.template.format(placeholder),)
    for text in prompts:
        if placeholder not in text.split():
            raise InputError("prompts", f"validation prompt '{text}' has no '{placeholder}' on its own, so it "
                             "would not show the style.", f"Write '{placeholder}' where the style goes, e.g. "
                             f"'a house by the sea in the style of {placeholder}'.")
    style_prompts = {text: StylePrompt(clip, text, placeholder, config.vectors_per_token) for text in prompts}

    def condition(text: str) -> list:
        vectors = style.vectors(paintings.batch([0], [0])[1])
        return host.text.encode_tokens(clip, style_prompts[text].tokens({k: v[0] for k, v in vectors.items()}))

    references = painting_images
    if settings.clip_vision is None or settings.clip_vision is clip_vision:  # the paintings' embeddings are known
        settings = replace(settings, clip_vision=clip_vision)
        references = torch.cat([features[0].embed for features in paintings.features])
    return Validator(settings, prompts, model, clip, vae, tuple(paintings.latents.shape[2:]), condition,
                     references, config.steps)


def check_config(config: InSTTrainingConfig) -> None:
    check_ranges(config, RANGES)
    if "{}" not in config.template:
        raise InputError("template", f"'{config.template}' has no '{{}}' for the placeholder.", "Use e.g. '{}'.")


def training_step(model, clip, style: InSTStyle, prompt: StylePrompt, data: Paintings, config: InSTTrainingConfig,
                  precision: Precision, step: int, backward: Backward) -> StepLoss:
    """One InST step: draw paintings (flipped with p=0.5), timesteps and noise from the step's own
    seeds, and backpropagate the MSE of the prediction conditioned on each painting's style token."""
    generator = torch.Generator().manual_seed(step_seed(config.seed, step, 0, DATA_STREAM))
    torch.manual_seed(step_seed(config.seed, step, 0, DROPOUT_STREAM))
    b = config.batch_size
    indices = torch.randint(0, len(data.hashes), (b,), generator=generator).tolist()
    flips = (torch.rand(b, generator=generator) < FLIP_PROBABILITY).long().tolist() if config.random_flip else [0] * b
    latents, features, sizes = data.batch(indices, flips)
    timesteps, noise = draw_timesteps_and_noise(model, latents.shape, generator)
    with precision.autocast():
        loss = denoising_loss(model, clip, style, prompt, latents, features, sizes, timesteps,
                              noise.to(latents.device)).mean()
    backward(loss)
    return StepLoss(loss.item())


def train_style(model, clip, vae, clip_vision, paintings: list[torch.Tensor], config: InSTTrainingConfig,
                progress_bar: host.progress.StepProgress | None = None, validation: ValidationSettings | None = None,
                save_to: Path | None = None, continue_from: InSTStyle | None = None) -> TrainingResult[InSTStyle]:
    """Train (or continue `continue_from` up to `config.steps` steps in all) and, with `save_to`, save
    the style there with AdamW's state beside it, so a later run can continue it exactly."""
    check_config(config)
    device = host.models.compute_device(model)
    precision = training_precision(device, config.precision, host.models.compute_dtype(model))
    require_model_family(model, INST_FAMILIES)
    require_matching_clip(model, clip)
    require_clip_text_encoders(clip)
    checkpointing = gradient_checkpointing_on(config.gradient_checkpointing, config.resolution)
    progress = TrainingProgress(progress_bar, config.steps)
    progress.say(f"preparing: {len(paintings)} painting(s) through CLIP vision and the VAE")
    data = prepare_paintings(model, vae, clip_vision, paintings, config.resolution)
    with training_session(model, clip, config.resolution, config.batch_size, checkpointing, precision,
                          NOTHING_SAVED) as patches:
        start_step, resume = 0, None
        if continue_from is None:
            style = new_style(model, clip, data, config)
        else:
            style, config, start_step = continued_style(model, clip, data, config, continue_from)
            resume = Resume(continue_from.state_dict(), continue_from.path, CONTINUE_INPUT)
        prompt = StylePrompt(clip, config.template.format(config.placeholder), config.placeholder,
                             config.vectors_per_token)
        progress.validator = None if validation is None else validator(model, clip, vae, clip_vision, style, data,
                                                                         paintings, config, validation)
        style.train()
        outcome = train(Run(
            torch.optim.AdamW(style.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay),
            dict(style.named_parameters()),
            lambda step, backward: training_step(model, clip, style, prompt, data, config, precision, step, backward),
            lambda: evaluation_loss(model, clip, style, prompt, data),
            config.steps, start_step, precision, progress, patches,
            LossStop("learning_rate", NOTHING_SAVED, f"Lower the learning rate, or {TRAIN_IN_FP32}."),
            resume=resume))
        training = {**asdict(config), "painting_sha256": data.hashes, "eval_loss_before": outcome.eval_before,
                    "eval_loss_after": outcome.eval_after}
        style.spec = StyleSpec(**{**asdict(style.spec), "training": training})
        if save_to is not None:
            with write_failure_named("filename", save_to, NOT_SAVED_AFTER_TRAINING):
                save_style(style, save_to)
                save_optimizer_state(outcome.optimizer, style.state_dict(), state_path(save_to))
    notes = [] if continue_from is None else [
        f"continued at step {start_step}; " + ("optimizer state restored" if outcome.optimizer_restored else
                                               "no optimizer state beside the file for it: AdamW's moments restart "
                                               "at zero")]
    style.requires_grad_(False)
    return TrainingResult(style.cpu().eval(), [s.loss for s in outcome.losses], outcome.eval_before,
                          outcome.eval_after, start_step=start_step, notes=notes, validation=progress.validator)
