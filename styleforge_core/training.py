"""StyleForge dual-binding LoRA training (Park et al., arXiv 2404.05256), Single and Multi.

Every step holds one StyleRef sample bound to "[V] style" and one Aux sample bound to "style"; the
loss is MSE_ref + lambda * MSE_aux in the model's own parameterisation (epsilon for SD1.x, v for SD2.x
768-v, the flow-matching velocity for SD3.5 and FLUX.1). The two terms go through the model as one
batch or one after the other (`passes`). Multi alternates its two components micro-batch by
micro-batch (people bound to "[V] style", backgrounds to "[W] style"), each with its own Aux weight
lambda. Only LoRA adapters are optimised; the diffusion model, text encoder and VAE weights stay
bit-for-bit the same.

Latents are encoded once (a few random crops per image, plain and flipped); a frozen text encoder
encodes each prompt once, before training. Each step's randomness comes from a
generator seeded by (seed, step), so a resumed run draws exactly what an uninterrupted one would, and
each checkpoint keeps the optimizer's state beside it, so the resumed run ends at the same LoRA.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .. import host
from ..training_kit.buckets import BUCKET_STEP, bucket_crop
from ..training_kit.diffusion_loss import draw_timesteps_and_noise, min_snr_weights, prediction_mse
from ..training_kit.errors import InputError
from ..training_kit.evaluation import fixed_set_loss
from ..training_kit.files import write_failure_named
from ..training_kit.images import SampleSize, cover_crop, cropped
from ..training_kit.input_rules import BATCH_SIZE, RESOLUTION, SEED, Range, check_ranges
from ..training_kit.loop import Backward, LossStop, Resume, Run, StepLoss, train, training_session
from ..training_kit.memory import gradient_checkpointing_on
from ..training_kit.model_checks import (
    FLUX_FAMILIES,
    STABLE_DIFFUSION_OR_FLUX,
    require_matching_clip,
    require_model_family,
)
from ..training_kit.optimizer_state import OptimizerState
from ..training_kit.precision import TRAIN_IN_FP32, Precision, training_precision
from ..training_kit.progress import TrainingProgress
from ..training_kit.result import TrainingResult
from ..training_kit.seeds import step_seed
from ..training_kit.validation import ValidationSettings, Validator
from .datasets import ImageSet, bound_prompt
from .lora import LoRANetwork
from .lora_file import LORA_FOLDER, METHODS, StyleForgeLoRA, require_family, save_lora
from .lora_targets import lora_targets

SCHEDULES = ("constant", "cosine")
# How a step's StyleRef and Aux samples go through the UNet: "one batch", or "separate" (one forward
# and backward each: the same gradients, the activations of one sample at a time). From
# SEPARATE_PASSES_FROM px "auto" is separate: a sample's activations then dominate memory. Below it
# batching wins: faster for little more peak memory (bench/styleforge_bench.py measures both, runners
# styleforge_batched and styleforge_separate).
PASSES = ("auto", "separate", "one batch")
SEPARATE_PASSES_FROM = 512
WEIGHT_DECAY = 0.01
CHECKPOINT_PRECISION = "fp32"  # resume continues from exactly the trained weights
RESUME_INPUT = "resume_from"
CHECKPOINT_KEPT = "the last checkpoint (if any) is kept."
CHECKPOINT_INPUT = "checkpoint_name"
STYLEREF_STREAM, AUX_STREAM = 0, 1  # independent random streams of a step's two draws


@dataclass(frozen=True)
class StyleForgeConfig:
    method: str = "Single"
    token: str = "zwx"  # [V], the authors' identifier
    background_token: str = "ohwx"  # [W], Multi only
    style_template: str = "{} style"
    aux_prompt: str = "style"
    aux_weight: float = 1.0  # lambda ([V] / people component)
    background_aux_weight: float = 1.0  # lambda of the backgrounds component (Multi)
    min_aux_images: int = 4
    rank: int = 8
    alpha: float = 8.0
    include_conv: bool = False
    steps: int = 1000
    unet_lr: float = 1e-4
    text_encoder_lr: float = 0.0  # 0 = text encoder frozen (no adapters, embeddings cached)
    lr_schedule: str = "constant"
    warmup_steps: int = 0
    batch_size: int = 1
    grad_accumulation: int = 1
    min_snr_gamma: float = 0.0  # 0 = off
    noise_offset: float = 0.0
    seed: int = 0
    resolution: int = 512
    crops_per_image: int = 1
    random_flip: bool = True
    aspect_buckets: bool = False  # each image at the bucket of its aspect ratio, not a square crop
    gradient_checkpointing: str = "auto"  # see training_kit.memory
    passes: str = "auto"  # see PASSES
    precision: str = "auto"
    checkpoint_every: int = 0

    @property
    def separate_passes(self) -> bool:
        return self.passes == "separate" or (self.passes == "auto" and self.resolution >= SEPARATE_PASSES_FROM)

    @property
    def train_text_encoder(self) -> bool:
        return self.text_encoder_lr > 0

    def style_prompt(self, token: str) -> str:
        """The prompt a StyleRef set is bound to: "[V] style" with the token in place of [V]."""
        return self.style_template.format(token)


# The allowed values of StyleForgeConfig's numeric settings (the nodes' widgets take them from here).
AUX_WEIGHT = Range(0.0, 10.0)
RANGES = {"aux_weight": AUX_WEIGHT, "background_aux_weight": AUX_WEIGHT, "min_aux_images": Range(1, 1000),
          "rank": Range(1, 1024), "alpha": Range(0.0, 1024.0), "steps": Range(1, 1000000),
          "unet_lr": Range(0.0, 1.0), "text_encoder_lr": Range(0.0, 1.0), "warmup_steps": Range(0, 100000),
          "batch_size": BATCH_SIZE, "grad_accumulation": Range(1, 1024), "min_snr_gamma": Range(0.0, 100.0),
          "noise_offset": Range(0.0, 1.0), "seed": SEED, "resolution": RESOLUTION, "crops_per_image": Range(1, 16),
          "checkpoint_every": Range(0, 100000)}


@dataclass(frozen=True)
class TrainingSets:
    style: ImageSet  # Single: the StyleRef set; Multi: the people set
    aux: ImageSet | None = None
    backgrounds: ImageSet | None = None

    def image_count(self) -> int:
        return sum(len(s.images) for s in (self.style, self.aux, self.backgrounds) if s is not None)


def by_shape(tensors: list[torch.Tensor], indices: list[int]) -> list[list[int]]:
    """`indices` grouped by the shape of their tensors, in order of first appearance: each group can be
    stacked into one batch."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for index in indices:
        groups.setdefault(tuple(tensors[index].shape), []).append(index)
    return list(groups.values())


@dataclass
class EncodedSet:
    """An image set ready to train on: the model-space latent (C, h, w) of every view (crops x flips,
    `views_per_image` consecutive views per image; with aspect buckets their sizes differ) and each
    view's prompt."""

    latents: list[torch.Tensor]
    prompts: list[str]
    sizes: list[SampleSize]  # each view's geometry, for SDXL's size conditioning
    views_per_image: int

    def first_views(self) -> list[int]:
        return list(range(0, len(self.prompts), self.views_per_image))

    def stacked(self, views: list[int]) -> torch.Tensor:
        return torch.stack([self.latents[view] for view in views])

    def square_latent_shape(self, side: int) -> tuple[int, int, int]:
        """The latent shape of a side x side picture (the VAE's scale read off the first view)."""
        channels, height, _ = self.latents[0].shape
        latent_side = side * height // self.sizes[0].target[0]
        return channels, latent_side, latent_side


@dataclass
class Component:
    """A StyleRef set bound to its prompt ("[V] style"), and the Aux weight lambda that goes with it."""

    prompt: str
    images: EncodedSet
    aux_weight: float


# ---- checks --------------------------------------------------------------------------------------

def _aux_weights(config: StyleForgeConfig) -> list[float]:
    return [config.aux_weight] + ([config.background_aux_weight] if config.method == "Multi" else [])


def check_inputs(config: StyleForgeConfig, sets: TrainingSets) -> None:
    if config.method not in METHODS:
        raise InputError("method", f"'{config.method}' is not one of {list(METHODS)}.")
    if config.lr_schedule not in SCHEDULES:
        raise InputError("lr_schedule", f"'{config.lr_schedule}' is not one of {list(SCHEDULES)}.")
    if config.passes not in PASSES:
        raise InputError("passes", f"'{config.passes}' is not one of {list(PASSES)}.")
    check_ranges(config, RANGES)
    if config.style_template.count("{}") != 1:
        raise InputError("style_template", f"'{config.style_template}' needs exactly one '{{}}' for the token.",
                         "Use e.g. '{} style'.")
    if not config.token.strip():
        raise InputError("token", "is empty.", "Use a rare word such as 'zwx'.")
    if config.unet_lr == 0 and config.text_encoder_lr == 0:
        raise InputError("unet_lr", "and text_encoder_lr are both 0, so no weight would change.",
                         "Set unet_lr above 0 (the paper: 1e-4).")
    if config.aspect_buckets and config.resolution % BUCKET_STEP:
        raise InputError("resolution", f"is {config.resolution}, but with aspect_buckets every side is a multiple of "
                         f"{BUCKET_STEP} px, so the square bucket would not be {config.resolution} px.",
                         f"Use a multiple of {BUCKET_STEP} (512 for SD1.x, 1024 for SDXL, SD3.5 and FLUX.1), or turn "
                         "aspect_buckets off.")
    _check_multi(config, sets)
    _check_aux(config, sets)


def _check_multi(config: StyleForgeConfig, sets: TrainingSets) -> None:
    if config.method == "Single" and sets.backgrounds is not None:
        raise InputError("backgrounds", "is connected, but Single-StyleForge has one StyleRef set.",
                         "Switch method to Multi to bind it to the background token, or disconnect it.")
    if config.method != "Multi":
        return
    if sets.backgrounds is None:
        raise InputError("backgrounds", "Multi-StyleForge needs a background set bound to '[W] style'; none is "
                         "connected.", "Connect a StyleForge Image Set of backgrounds, or switch method to Single.")
    if config.token.strip().lower() == config.background_token.strip().lower():
        raise InputError("background_token", f"is '{config.background_token}', the same as token; [V] and [W] "
                         "must be different words or both components learn one binding.",
                         "Pick another rare word, e.g. 'ohwx'.")
    if not config.background_token.strip():
        raise InputError("background_token", "is empty.", "Use a rare word such as 'ohwx'.")


def _check_aux(config: StyleForgeConfig, sets: TrainingSets) -> None:
    """The Aux set is required unless every lambda is 0 (an explicit choice to train without it);
    it is never generated behind the user's back."""
    if not any(_aux_weights(config)):
        return
    without = "or set aux_weight" + (" and background_aux_weight" if config.method == "Multi" else "") + \
        " to 0 to train without the Aux binding."
    if sets.aux is None:
        raise InputError("aux", f"no Aux set is connected, but aux_weight is {config.aux_weight}.",
                         "Connect a StyleForge Image Set of about 15-20 digital paintings (mostly people), "
                         + without)
    if len(sets.aux) < config.min_aux_images:
        raise InputError("aux", f"has {len(sets.aux)} images; at least min_aux_images={config.min_aux_images} are "
                         "needed (the paper uses 15-20).", "Add images, lower min_aux_images, " + without)


def check_family(config: StyleForgeConfig, model) -> str:
    """The model's family, with the options that apply to it."""
    family = require_model_family(model, STABLE_DIFFUSION_OR_FLUX)
    if config.train_text_encoder and family in FLUX_FAMILIES:
        raise InputError("text_encoder_lr", f"is {config.text_encoder_lr}, but on {family} StyleForge keeps the "
                         "text encoders frozen: the DiT reads the prompt from T5-XXL (4.7B parameters), and CLIP-L "
                         "gives only a pooled vector.", "Set text_encoder_lr to 0.")
    if config.include_conv and not host.models.has_unet(model):
        raise InputError("include_conv", f"is on, but a {family} model has no convolutions in its blocks to adapt.",
                         "Turn include_conv off.")
    if config.min_snr_gamma and host.diffusion.is_flow_matching(model):
        raise InputError("min_snr_gamma", f"is {config.min_snr_gamma}, but min-SNR weighting is defined for epsilon "
                         f"and v models; {family} trains by flow matching, whose logit-normal noise levels weight the "
                         "loss instead.", "Set min_snr_gamma to 0.")
    return family


def encode_set(model, vae, images: ImageSet, prompt: str, config: StyleForgeConfig,
               generator: torch.Generator) -> EncodedSet:
    """VAE-encode every view once: `crops_per_image` random crops of each image (square, or at its aspect
    bucket), each also flipped; every view is bound to `prompt` (plus its image's caption)."""
    views, prompts, sizes = [], [], []
    for image, caption in zip(images.images, images.captions):
        for _ in range(config.crops_per_image):
            geometry = (bucket_crop(image, config.resolution, generator) if config.aspect_buckets
                        else cover_crop(image, (config.resolution, config.resolution), generator))
            crop = cropped(image, geometry)
            flips = [(crop, geometry), (crop.flip(2), geometry.flipped())] if config.random_flip else [(crop, geometry)]
            for view, size in flips:
                views.append(view)
                sizes.append(size)
                prompts.append(bound_prompt(prompt, caption))
    latents: list[torch.Tensor] = [torch.empty(0)] * len(views)
    for group in by_shape(views, list(range(len(views)))):
        # outside inference mode, so the cached latents can enter autograd
        with torch.inference_mode(False), torch.no_grad():
            encoded = host.images.vae_encode(vae, torch.cat([views[i] for i in group])).float()
            encoded = host.diffusion.latent_to_model_space(model, encoded).to(host.models.compute_device(model))
        for view, latent in zip(group, encoded):
            latents[view] = latent
    return EncodedSet(latents, prompts, sizes, len(views) // len(images))


class TextConditioner:
    """Prompt -> (text features, pooled). A text encoder that trains encodes each call's prompts anew,
    with gradients. A frozen one's prompts are read from `cache`, where they were all encoded before
    training started (`encode_ahead`), so the encoder need not stay on the device while the diffusion
    model trains (FLUX.1's T5-XXL: 4.7B parameters)."""

    def __init__(self, clip, device: torch.device, frozen: bool):
        self.clip, self.device, self.frozen = clip, device, frozen
        self.cache: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}

    def encode_ahead(self, prompts: list[str]) -> None:
        """A frozen text encoder's features of `prompts` (those not cached yet), as stock CLIP Text Encode
        computes them: ComfyUI loads the encoder for this and may offload it once training needs room."""
        for prompt in dict.fromkeys(prompts) if self.frozen else ():
            if prompt not in self.cache:
                cond, pooled = host.text.encode_tokens_frozen(self.clip, host.text.tokenize(self.clip, prompt))
                self.cache[prompt] = cond.to(self.device), None if pooled is None else pooled.to(self.device)

    def frozen_now(self, prompts: list[str]) -> TextConditioner:
        """A frozen copy holding `prompts` as the training text encoder encodes them now (the evaluation
        set: the weights do not change while it runs, so each prompt is encoded once)."""
        frozen = TextConditioner(self.clip, self.device, frozen=True)
        frozen.cache = {prompt: self._encode(prompt) for prompt in dict.fromkeys(prompts)}
        return frozen

    def _encode(self, prompt: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        cond, pooled = host.text.encode_tokens_for_training(self.clip, host.text.tokenize(self.clip, prompt))
        return cond.to(self.device), pooled.to(self.device) if pooled is not None else None

    def __call__(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
        encoded = self.cache if self.frozen else {prompt: self._encode(prompt) for prompt in dict.fromkeys(prompts)}
        cond = torch.cat([encoded[p][0] for p in prompts])
        pooled = [encoded[p][1] for p in prompts]
        return cond, torch.cat(pooled) if pooled[0] is not None else None


# ---- samples and their loss ----------------------------------------------------------------------

@dataclass
class Draw:
    """Samples of one set for one step: latents, their prompts and sizes, timesteps and noise."""

    latents: torch.Tensor
    prompts: list[str]
    sizes: list[SampleSize]
    timesteps: torch.Tensor
    noise: torch.Tensor


def distinct_views(count: int, batch_size: int, generator: torch.Generator) -> torch.Tensor:
    """`batch_size` view indices of `count` views, none twice (all of them, in random order, when there
    are no more than `batch_size`)."""
    return torch.randperm(count, generator=generator)[:batch_size]


def bucket_of_a_random_view(images: EncodedSet, generator: torch.Generator) -> list[int]:
    """The views of one latent size: with aspect buckets, the size of a view drawn at random, so that each
    bucket is drawn as often as it holds views; without them (one size), every view, and nothing drawn."""
    buckets = by_shape(images.latents, list(range(len(images.prompts))))
    if len(buckets) == 1:
        return buckets[0]
    drawn = int(torch.randint(len(images.prompts), (1,), generator=generator))
    return next(bucket for bucket in buckets if drawn in bucket)


def draw(model, images: EncodedSet, config: StyleForgeConfig, seed: int) -> Draw:
    """A step's samples of a set: `batch_size` distinct views of one bucket (all of them when it holds no
    more; kohya's buckets also make smaller batches rather than repeat an image), with their timesteps
    and noise."""
    generator = torch.Generator().manual_seed(seed)
    bucket = bucket_of_a_random_view(images, generator)
    picked = [bucket[i] for i in distinct_views(len(bucket), config.batch_size, generator).tolist()]
    latents = images.stacked(picked)
    timesteps, noise = draw_timesteps_and_noise(model, latents.shape, generator, config.noise_offset)
    return Draw(latents, [images.prompts[i] for i in picked], [images.sizes[i] for i in picked], timesteps,
                noise.to(latents.device))


def prediction_errors(model, conditioner: TextConditioner, draws: list[Draw], gamma: float) -> list[torch.Tensor]:
    """Per-sample (min-SNR weighted) prediction MSE of each draw, all draws in one UNet batch."""
    latents = torch.cat([d.latents for d in draws])
    timesteps = torch.cat([d.timesteps for d in draws])
    cond, pooled = conditioner([p for d in draws for p in d.prompts])
    sigma = host.diffusion.sigma_at(model, timesteps)
    errors = prediction_mse(model, latents, torch.cat([d.noise for d in draws]), sigma, cond, pooled,
                            [size for d in draws for size in d.sizes])
    if gamma:
        errors = errors * min_snr_weights(model, sigma, gamma)
    return list(errors.split([len(d.prompts) for d in draws]))


@torch.no_grad()
def evaluation_loss(model, conditioner: TextConditioner, components: list[Component]) -> float:
    """StyleRef loss on the kit's fixed evaluation set: every image's first view, each prompt encoded
    once for all its timesteps (a frozen text encoder's come from the training's own cache)."""
    batches = [(c.images, views) for c in components
               for views in by_shape(c.images.latents, c.images.first_views())]  # one latent size each
    if not conditioner.frozen:
        conditioner = conditioner.frozen_now([images.prompts[i] for images, views in batches for i in views])

    def loss(index: int, latents: torch.Tensor, timesteps: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        images, views = batches[index]
        sample = Draw(latents, [images.prompts[i] for i in views], [images.sizes[i] for i in views], timesteps, noise)
        return prediction_errors(model, conditioner, [sample], 0.0)[0]

    return fixed_set_loss(model, [images.stacked(views) for images, views in batches], loss)


def resume_entry(path: Path) -> str:
    """How resume_from lists the checkpoint at `path`: its name under the LoRA folder (or the path,
    for one saved elsewhere)."""
    folder = host.files.model_folder(LORA_FOLDER)
    return path.relative_to(folder).as_posix() if path.is_relative_to(folder) else str(path)


def write_checkpoint(lora: StyleForgeLoRA, path: Path) -> None:
    """A checkpoint that cannot be written stops the run with an error on checkpoint_name: the previous
    one stays as it was (the writes are atomic), and a resume continues from it."""
    with write_failure_named(CHECKPOINT_INPUT, path, "Checkpoints written before it are kept; resume_from "
                             "continues from the last one."):
        save_lora(lora, path, CHECKPOINT_PRECISION)


def lr_factor(config: StyleForgeConfig, step: int) -> float:
    """Learning-rate multiplier of optimizer step `step` (1-based): linear warmup, then constant or cosine."""
    if step <= config.warmup_steps:
        return step / config.warmup_steps
    if config.lr_schedule == "cosine":
        progress = (step - 1 - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * progress))
    return 1.0


# ---- metadata, resume ----------------------------------------------------------------------------

def lora_metadata(config: StyleForgeConfig, family: str, sets: TrainingSets, steps: int) -> dict:
    tokens = {"V": config.token} | ({"W": config.background_token} if config.method == "Multi" else {})
    prompts = {name: config.style_prompt(token) for name, token in tokens.items()} | {"aux": config.aux_prompt}
    named = {"styleref" if config.method == "Single" else "people": sets.style, "aux": sets.aux,
             "backgrounds": sets.backgrounds}
    datasets = {name: {"images": len(s), "sha256": s.sha256(), "source": s.source}
                for name, s in named.items() if s is not None}
    lambdas = {"V": config.aux_weight} | ({"W": config.background_aux_weight} if config.method == "Multi" else {})
    return {"method": config.method, "base_model_family": family, "tokens": tokens, "prompts": prompts,
            "steps": steps, "rank": config.rank, "alpha": config.alpha, "lambda": lambdas, "datasets": datasets,
            "include_conv": config.include_conv, "train_text_encoder": config.train_text_encoder,
            "settings": asdict(config)}


def resumed_config(config: StyleForgeConfig, resume: StyleForgeLoRA | None, family: str) -> StyleForgeConfig:
    """The network's shape (rank, alpha, conv layers) comes from the file being resumed, not the inputs."""
    if resume is None:
        return config
    require_family(resume, family, RESUME_INPUT)
    if resume.metadata["method"] != config.method:
        raise InputError(RESUME_INPUT, f"is a {resume.metadata['method']}-StyleForge LoRA, but this is the "
                         f"{config.method}-StyleForge trainer.", "Resume it with the trainer that made it, or pick "
                         "[none] to start a new one.")
    if resume.steps >= config.steps:
        raise InputError("steps", f"is {config.steps}, but '{RESUME_INPUT}' has already been trained for "
                         f"{resume.steps} steps.", f"Set steps above {resume.steps} to continue training.")
    if bool(resume.metadata["train_text_encoder"]) != config.train_text_encoder:
        state = "trains" if resume.metadata["train_text_encoder"] else "does not train"
        raise InputError("text_encoder_lr", f"is {config.text_encoder_lr}, but the LoRA being resumed {state} the "
                         "text encoder.", "Set text_encoder_lr > 0 exactly when the resumed LoRA trains it.")
    return StyleForgeConfig(**{**asdict(config), "rank": int(resume.metadata["rank"]),
                               "alpha": float(resume.metadata["alpha"]),
                               "include_conv": bool(resume.metadata["include_conv"])})


# ---- the loop ------------------------------------------------------------------------------------

def prepare_components(model, vae, sets: TrainingSets, config: StyleForgeConfig,
                       generator: torch.Generator) -> tuple[list[Component], EncodedSet | None]:
    """The StyleRef component(s) and the Aux set (None when it is not used), each encoded once."""
    def component(images: ImageSet, token: str, aux_weight: float) -> Component:
        prompt = config.style_prompt(token)
        return Component(prompt, encode_set(model, vae, images, prompt, config, generator), aux_weight)

    components = [component(sets.style, config.token, config.aux_weight)]
    if config.method == "Multi":
        components.append(component(sets.backgrounds, config.background_token, config.background_aux_weight))
    uses_aux = sets.aux is not None and any(_aux_weights(config))
    aux = encode_set(model, vae, sets.aux, config.aux_prompt, config, generator) if uses_aux else None
    return components, aux


def validator(model, clip, vae, sets: TrainingSets, components: list[Component], config: StyleForgeConfig,
              settings: ValidationSettings) -> Validator:
    """Validation rounds with the adapters as they are then; by default each component's own prompt
    ("[V] style"). The score compares to the StyleRef images (Multi: people and backgrounds)."""
    prompts = settings.prompts or tuple(component.prompt for component in components)

    def condition(text: str) -> list:
        return host.text.encode_tokens(clip, host.text.tokenize(clip, text))

    references = [*sets.style.images, *(sets.backgrounds.images if config.method == "Multi" else ())]
    latent_shape = components[0].images.square_latent_shape(config.resolution)
    return Validator(settings, prompts, model, clip, vae, latent_shape, condition, references, config.steps,
                     clip_trains=config.train_text_encoder)


def _notes(config: StyleForgeConfig, sets: TrainingSets, start_step: int, seconds_per_step: float,
           optimizer_restored: bool) -> list[str]:
    notes = [f"{name}: {s.summary()}" for name, s in (("style", sets.style), ("backgrounds", sets.backgrounds),
                                                        ("aux", sets.aux)) if s is not None]
    notes.append(f"{seconds_per_step:.3f} s per step")
    if sets.aux is not None and not any(_aux_weights(config)):
        notes.append("aux weight is 0: the Aux set is not used (no prior preservation)")
    if start_step:
        notes.append(f"resumed at step {start_step} (rank {config.rank}, alpha {config.alpha} from the file); "
                     + ("optimizer state restored" if optimizer_restored else
                        "no optimizer state beside the file for that step: AdamW's moments restart at zero"))
    return notes


def accumulate_gradients(model, conditioner: TextConditioner, precision: Precision, components: list[Component],
                         aux_set: EncodedSet | None, config: StyleForgeConfig, step: int,
                         backward: Backward) -> StepLoss:
    """One optimizer step of StyleForge: for each of `grad_accumulation` micro-batches, draw StyleRef
    samples and Aux samples and backpropagate loss = MSE_ref + lambda * MSE_aux (each term on its own
    draw; Multi alternates its components micro-batch by micro-batch). Returns the mean loss."""
    def mse(draws: list[Draw]) -> list[torch.Tensor]:
        with precision.autocast():
            return [errors.mean() for errors in prediction_errors(model, conditioner, draws, config.min_snr_gamma)]

    def accumulate(loss: torch.Tensor) -> None:  # the step's gradient is the mean over its micro-batches
        backward(loss / config.grad_accumulation)

    micro_losses = []
    for micro in range(config.grad_accumulation):
        component = components[((step - 1) * config.grad_accumulation + micro) % len(components)]
        lam = component.aux_weight
        ref = draw(model, component.images, config, step_seed(config.seed, step, micro, STYLEREF_STREAM))
        aux = (draw(model, aux_set, config, step_seed(config.seed, step, micro, AUX_STREAM))
               if aux_set is not None and lam else None)
        if aux is None:  # no Aux set, or lambda = 0
            (mse_ref,) = mse([ref])
            mse_aux = torch.zeros_like(mse_ref)
            accumulate(mse_ref)
        elif config.separate_passes or ref.latents.shape != aux.latents.shape:
            # StyleRef's backward first frees its activations before Aux's forward (and samples of two
            # aspect buckets cannot share a batch)
            (mse_ref,) = mse([ref])
            accumulate(mse_ref)
            (mse_aux,) = mse([aux])
            accumulate(lam * mse_aux)
        else:  # both samples in one UNet batch
            mse_ref, mse_aux = mse([ref, aux])
            accumulate(mse_ref + lam * mse_aux)
        loss = mse_ref.detach() + lam * mse_aux.detach()
        micro_losses.append((loss.item(), mse_ref.item(), mse_aux.item()))
    loss, styleref, aux_term = (sum(values) / len(micro_losses) for values in zip(*micro_losses))
    return StepLoss(loss, {"StyleRef": styleref, "Aux": aux_term})


def train_styleforge(model, clip, vae, sets: TrainingSets, config: StyleForgeConfig,
                     progress_bar: host.progress.StepProgress | None = None, checkpoint_path: Path | None = None,
                     resume: StyleForgeLoRA | None = None,
                     validation: ValidationSettings | None = None) -> TrainingResult[StyleForgeLoRA]:
    """StyleForge on the models ComfyUI loaded, the prompts through `clip`."""
    text = TextConditioner(clip, host.models.compute_device(model), frozen=not config.train_text_encoder)
    return train_styleforge_on_text(model, text, vae, sets, config, progress_bar, checkpoint_path, resume, validation)


def train_styleforge_on_text(model, text: TextConditioner, vae, sets: TrainingSets, config: StyleForgeConfig,
                             progress_bar: host.progress.StepProgress | None = None,
                             checkpoint_path: Path | None = None, resume: StyleForgeLoRA | None = None,
                             validation: ValidationSettings | None = None) -> TrainingResult[StyleForgeLoRA]:
    """The training run, the prompts' text features from `text` (its CLIP, if any, must match the model;
    validation samples with it)."""
    check_inputs(config, sets)
    family = check_family(config, model)
    if text.clip is not None:
        require_matching_clip(model, text.clip)
    config = resumed_config(config, resume, family)
    start_step = resume.steps if resume is not None else 0
    device = host.models.compute_device(model)
    precision = training_precision(device, config.precision, host.models.compute_dtype(model))
    progress = TrainingProgress(progress_bar, config.steps)
    progress.say(f"preparing: {sets.image_count()} images to latents through the VAE")
    components, aux_set = prepare_components(model, vae, sets, config, torch.Generator().manual_seed(config.seed))
    text.encode_ahead([p for images in [*(c.images for c in components), aux_set] if images is not None
                       for p in images.prompts])
    trained_clip = text.clip if config.train_text_encoder else None
    checkpointing = gradient_checkpointing_on(config.gradient_checkpointing, config.resolution)
    with training_session(model, trained_clip, config.resolution, config.batch_size, checkpointing, precision,
                          CHECKPOINT_KEPT) as patches:
        targets = lora_targets(model, trained_clip, config.include_conv, config.train_text_encoder)
        network = LoRANetwork(targets, config.rank, config.alpha, config.seed)
        if resume is not None:
            network.load_kohya_state(resume.tensors, RESUME_INPUT)
        progress.validator = None if validation is None else validator(model, text.clip, vae, sets, components,
                                                                         config, validation)

        def snapshot(step: int, optimizer: OptimizerState) -> StyleForgeLoRA:
            return StyleForgeLoRA(network.kohya_state(), lora_metadata(config, family, sets, step), optimizer=optimizer)

        run = Run(torch.optim.AdamW(network.parameter_groups(config.unet_lr, config.text_encoder_lr),
                                    weight_decay=WEIGHT_DECAY),
                  dict(network.named_parameters()),
                  lambda step, backward: accumulate_gradients(model, text, precision, components, aux_set,
                                                              config, step, backward),
                  lambda: evaluation_loss(model, text, components), config.steps, start_step, precision,
                  progress, patches,
                  LossStop("unet_lr", CHECKPOINT_KEPT, f"Lower unet_lr / text_encoder_lr, or {TRAIN_IN_FP32}."),
                  lr_factor=lambda step: lr_factor(config, step),
                  checkpoint=None if checkpoint_path is None else lambda step, optimizer: write_checkpoint(
                      snapshot(step, optimizer), checkpoint_path),
                  checkpoint_every=config.checkpoint_every,
                  checkpoint_name="" if checkpoint_path is None else resume_entry(checkpoint_path),
                  resume=None if resume is None else Resume(resume.tensors, resume.path, RESUME_INPUT))
        with network.attached(targets):
            outcome = train(run)
        lora = snapshot(config.steps, outcome.optimizer)
    lora.metadata.update(eval_loss_before=outcome.eval_before, eval_loss_after=outcome.eval_after)
    terms = {name: [s.terms[name] for s in outcome.losses] for name in ("StyleRef", "Aux")}
    notes = _notes(config, sets, start_step, outcome.seconds_per_step, outcome.optimizer_restored)
    return TrainingResult(lora, [s.loss for s in outcome.losses], outcome.eval_before, outcome.eval_after, terms,
                          start_step, notes, progress.validator)
