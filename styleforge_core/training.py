"""StyleForge dual-binding LoRA training (METHODS.md section 2), Single and Multi.

Every step holds one StyleRef sample bound to "[V] style" and one Aux sample bound to "style"; the
loss is MSE_ref + lambda * MSE_aux in the model's own parameterisation (epsilon for SD1.x). The two
terms go through the UNet as one batch or one after the other (`passes`). Multi alternates its two
components step by step (people bound to "[V] style", backgrounds to "[W] style"), each with its own
Aux weight lambda. Only LoRA adapters
are optimised; the UNet, text encoder and VAE weights stay bit-for-bit the same.

Latents are encoded once (a few random crops per image, plain and flipped); text embeddings are
encoded once per prompt while the text encoder is frozen. Each step's randomness comes from a
generator seeded by (seed, step), so a resumed run draws exactly what an uninterrupted one would.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .. import comfy_adapter as host
from ..errors import InputError, require_finite_loss
from ..images import resize_and_crop
from ..precision import autocast, autocast_dtype
from .datasets import ImageSet, bound_prompt
from .lora import LoRANetwork
from .lora_file import StyleForgeLoRA, require_family, save_lora

METHODS = ("Single", "Multi")
SCHEDULES = ("constant", "cosine")
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
PASSES = ("auto", "separate", "one batch")
# From this resolution "auto" backs the StyleRef and Aux terms one after the other: a sample's
# activations then dominate memory, and batching two gains little speed (measured on CPU at 256 px:
# 3% slower, 15% less peak memory; at 64 px batching is 1.45x faster and memory is the same).
SEPARATE_PASSES_FROM = 256
EVAL_TIMESTEPS = (100, 300, 500, 700, 900)  # fixed evaluation set: these t, fixed noise, first crop
EVAL_SEED = 1234
WEIGHT_DECAY = 0.01
VAE_BATCH = 8
PREVIEW_STEPS, PREVIEW_CFG = 12, 5.0
CHECKPOINT_PRECISION = "fp32"  # resume continues from exactly the trained weights
RESUME_INPUT = "resume_from"


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
    flip: bool = True
    gradient_checkpointing: bool = False
    passes: str = "auto"  # separate: StyleRef and Aux backward one after the other (one sample's activations)
    precision: str = "auto"
    preview_every: int = 0
    checkpoint_every: int = 0

    @property
    def separate_passes(self) -> bool:
        return self.passes == "separate" or (self.passes == "auto" and self.resolution >= SEPARATE_PASSES_FROM)

    @property
    def train_text_encoder(self) -> bool:
        return self.text_encoder_lr > 0

    def binding(self, token: str) -> str:
        return self.style_template.format(token)


@dataclass(frozen=True)
class TrainingSets:
    style: ImageSet  # Single: the StyleRef set; Multi: the people set
    aux: ImageSet | None = None
    backgrounds: ImageSet | None = None


@dataclass
class Binding:
    """One image set bound to one prompt, ready to train on: model-space latents of every view
    (crops x flips, `views_per_image` consecutive views per image) and each view's prompt."""

    latents: torch.Tensor
    prompts: list[str]
    views_per_image: int

    def first_views(self) -> list[int]:
        return list(range(0, len(self.prompts), self.views_per_image))


@dataclass
class Component:
    """A StyleRef component, its binding prompt and the Aux weight lambda that goes with it."""

    name: str
    prompt: str
    binding: Binding
    aux_weight: float


@dataclass
class TrainingResult:
    lora: StyleForgeLoRA
    losses: list[float]
    ref_losses: list[float]
    aux_losses: list[float]
    eval_before: float
    eval_after: float
    start_step: int
    notes: list[str] = field(default_factory=list)


# ---- checks --------------------------------------------------------------------------------------

def _aux_weights(config: StyleForgeConfig) -> list[float]:
    return [config.aux_weight] + ([config.background_aux_weight] if config.method == "Multi" else [])


def check_inputs(config: StyleForgeConfig, sets: TrainingSets) -> None:
    if config.method not in METHODS:
        raise InputError("method", f"'{config.method}' is not one of {list(METHODS)}.")
    if config.lr_schedule not in SCHEDULES:
        raise InputError("lr_schedule", f"'{config.lr_schedule}' is not one of {list(SCHEDULES)}.")
    if config.precision not in PRECISIONS:
        raise InputError("precision", f"'{config.precision}' is not one of {list(PRECISIONS)}.")
    if config.passes not in PASSES:
        raise InputError("passes", f"'{config.passes}' is not one of {list(PASSES)}.")
    if config.resolution % 8 or config.resolution < 64:
        raise InputError("resolution", f"{config.resolution} is not a multiple of 8 of at least 64.", "Use e.g. 512.")
    if config.style_template.count("{}") != 1:
        raise InputError("style_template", f"'{config.style_template}' needs exactly one '{{}}' for the token.",
                         "Use e.g. '{} style'.")
    if not config.token.strip():
        raise InputError("token", "is empty.", "Use a rare word such as 'zwx'.")
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


def prepare_binding(model, vae, images: ImageSet, binding: str, config: StyleForgeConfig,
                    generator: torch.Generator) -> Binding:
    """VAE-encode every view once: `crops_per_image` random crops of each image, each also flipped."""
    views, prompts = [], []
    for image, caption in zip(images.images, images.captions):
        for _ in range(config.crops_per_image):
            crop = resize_and_crop(image, config.resolution, generator)
            for view in (crop, crop.flip(2)) if config.flip else (crop,):
                views.append(view)
                prompts.append(bound_prompt(binding, caption))
    # outside inference mode, so the cached latents can enter autograd
    with torch.inference_mode(False), torch.no_grad():
        batch = torch.cat(views)
        latents = torch.cat([host.vae_encode(vae, batch[i:i + VAE_BATCH]).float()
                             for i in range(0, len(batch), VAE_BATCH)])
        latents = host.latent_to_model_space(model, latents).to(host.compute_device(model))
    return Binding(latents, prompts, len(views) // len(images))


class TextConditioner:
    """Prompt -> (cross-attention features, pooled), each unique prompt encoded once per call, and
    cached across calls while the text encoder is frozen."""

    def __init__(self, clip, device: torch.device, frozen: bool):
        self.clip, self.device, self.frozen = clip, device, frozen
        self.cache: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}

    def _encode(self, prompt: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        with torch.no_grad() if self.frozen else contextlib.nullcontext():
            cond, pooled = host.encode_tokens_for_training(self.clip, host.tokenize(self.clip, prompt))
        return cond.to(self.device), pooled.to(self.device) if pooled is not None else None

    def __call__(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
        encoded = self.cache if self.frozen else {}
        for prompt in dict.fromkeys(prompts):
            if prompt not in encoded:
                encoded[prompt] = self._encode(prompt)
        cond = torch.cat([encoded[p][0] for p in prompts])
        pooled = [encoded[p][1] for p in prompts]
        return cond, torch.cat(pooled) if pooled[0] is not None else None


# ---- loss ----------------------------------------------------------------------------------------

@dataclass
class Draw:
    """Samples of one binding for one step: latents, their prompts, timesteps and noise."""

    latents: torch.Tensor
    prompts: list[str]
    timesteps: torch.Tensor
    noise: torch.Tensor


def draw(model, binding: Binding, count: int, config: StyleForgeConfig, generator: torch.Generator) -> Draw:
    indices = torch.randint(0, len(binding.prompts), (count,), generator=generator)
    latents = binding.latents[indices]
    timesteps = torch.randint(0, host.num_timesteps(model), (count,), generator=generator)
    noise = torch.randn(latents.shape, generator=generator)
    if config.noise_offset:
        noise = noise + config.noise_offset * torch.randn((*latents.shape[:2], 1, 1), generator=generator)
    return Draw(latents, [binding.prompts[i] for i in indices.tolist()], timesteps, noise.to(latents.device))


def snr_weights(model, sigma: torch.Tensor, gamma: float) -> torch.Tensor:
    """Min-SNR-gamma loss weights (Hang et al. 2023); SNR = 1/sigma^2 in ComfyUI's sigma space."""
    snr = sigma.float().pow(-2)
    clipped = snr.clamp(max=gamma)
    return clipped / (snr + 1) if host.is_v_prediction(model) else clipped / snr


def sample_errors(model, conditioner: TextConditioner, samples: list[Draw], gamma: float) -> list[torch.Tensor]:
    """Per-sample (min-SNR weighted) prediction MSE of each draw, all draws in one UNet batch."""
    latents = torch.cat([d.latents for d in samples])
    timesteps = torch.cat([d.timesteps for d in samples])
    cond, pooled = conditioner([p for d in samples for p in d.prompts])
    sigma = host.sigma_at(model, timesteps)
    errors = host.prediction_mse(model, latents, torch.cat([d.noise for d in samples]), sigma, cond, pooled)
    if gamma:
        errors = errors * snr_weights(model, sigma, gamma)
    return list(errors.split([len(d.prompts) for d in samples]))


def step_seed(seed: int, step: int, micro: int, stream: int) -> int:
    """Independent, reproducible randomness per (step, micro-batch, stream): a resumed run draws what
    an uninterrupted run would, and the StyleRef draws do not depend on whether Aux is drawn."""
    digest = hashlib.sha256(f"{seed}/{step}/{micro}/{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def binding_draws(model, component: Component, aux: Binding | None, config: StyleForgeConfig, step: int,
                  micro: int) -> list[tuple[float, Draw]]:
    """The micro-batch's (weight, draw) terms: the StyleRef draw with weight 1, then the Aux draw with
    weight lambda (left out when there is no Aux set or lambda is 0)."""
    b = config.batch_size
    terms = [(1.0, draw(model, component.binding, b, config, torch.Generator().manual_seed(
        step_seed(config.seed, step, micro, 0))))]
    if aux is not None and component.aux_weight != 0:
        terms.append((component.aux_weight, draw(model, aux, b, config, torch.Generator().manual_seed(
            step_seed(config.seed, step, micro, 1)))))
    return terms


def backward_terms(model, conditioner: TextConditioner, terms: list[tuple[float, Draw]], config: StyleForgeConfig,
                   step: int, scaler: torch.amp.GradScaler, mixed) -> list[float]:
    """Backward sum(weight x term) / grad_accumulation; returns each term's value. All terms in one UNet
    batch, or, when `separate_passes`, one forward and backward per term (same gradients, the
    activations of one term at a time)."""
    passes = [[term] for term in terms] if config.separate_passes else [terms]
    values = []
    for group in passes:
        with mixed:
            errors = sample_errors(model, conditioner, [d for _, d in group], config.min_snr_gamma)
            means = [e.mean() for e in errors]
            loss = sum(weight * m for (weight, _), m in zip(group, means))
        require_finite_loss(loss.item(), step, "unet_lr", "the last checkpoint (if any) is kept.",
                            "Lower unet_lr / text_encoder_lr, or train in fp32.")
        scaler.scale(loss / config.grad_accumulation).backward()
        values += [m.item() for m in means]
    return values


@torch.no_grad()
def evaluation_loss(model, conditioner: TextConditioner, components: list[Component]) -> float:
    """StyleRef loss on a fixed set (every image's first view at EVAL_TIMESTEPS with fixed noise), so
    before/after numbers are comparable."""
    generator = torch.Generator().manual_seed(EVAL_SEED)
    total, count = 0.0, 0
    for component in components:
        indices = component.binding.first_views()
        latents = component.binding.latents[indices]
        prompts = [component.binding.prompts[i] for i in indices]
        for t in EVAL_TIMESTEPS:
            noise = torch.randn(latents.shape, generator=generator).to(latents.device)
            sample = Draw(latents, prompts, torch.full((len(indices),), t), noise)
            total += float(sample_errors(model, conditioner, [sample], 0.0)[0].sum())
            count += len(indices)
    return total / count


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
    prompts = {name: config.binding(token) for name, token in tokens.items()} | {"aux": config.aux_prompt}
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
                       generator: torch.Generator) -> tuple[list[Component], Binding | None]:
    def component(name: str, images: ImageSet, token: str, aux_weight: float) -> Component:
        prompt = config.binding(token)
        return Component(name, prompt, prepare_binding(model, vae, images, prompt, config, generator), aux_weight)

    components = [component("people" if config.method == "Multi" else "styleref", sets.style, config.token,
                            config.aux_weight)]
    if config.method == "Multi":
        components.append(component("backgrounds", sets.backgrounds, config.background_token,
                                    config.background_aux_weight))
    uses_aux = sets.aux is not None and any(_aux_weights(config))
    aux = prepare_binding(model, vae, sets.aux, config.aux_prompt, config, generator) if uses_aux else None
    return components, aux


def preview(model, clip, vae, prompt: str, latent_shape: tuple[int, ...], seed: int):
    """A small sample of the binding prompt with the current adapters, for the progress bar."""
    with torch.no_grad():
        positive = host.encode_tokens(clip, host.tokenize(clip, prompt))
    return host.preview_image(model, clip, vae, positive, latent_shape, seed, PREVIEW_STEPS, PREVIEW_CFG)


def _notes(config: StyleForgeConfig, sets: TrainingSets, start_step: int, seconds_per_step: float) -> list[str]:
    notes = [f"{name}: {s.summary()}" for name, s in (("style", sets.style), ("backgrounds", sets.backgrounds),
                                                        ("aux", sets.aux)) if s is not None]
    notes.append(f"{seconds_per_step:.3f} s per step")
    if sets.aux is not None and not any(_aux_weights(config)):
        notes.append("aux weight is 0: the Aux set is not used (no prior preservation)")
    if start_step:
        notes.append(f"resumed at step {start_step} (rank {config.rank}, alpha {config.alpha} from the file)")
    return notes


def optimizer_step(model, conditioner: TextConditioner, components: list[Component], aux: Binding | None,
                   config: StyleForgeConfig, step: int, optimizer: torch.optim.Optimizer, base_lrs: list[float],
                   scaler: torch.amp.GradScaler, mixed) -> tuple[float, float, float]:
    """One optimizer step over `grad_accumulation` micro-batches (Multi alternates its components
    micro-batch by micro-batch); returns the mean (loss, StyleRef term, Aux term)."""
    for group, base in zip(optimizer.param_groups, base_lrs):
        group["lr"] = base * lr_factor(config, step)
    totals = []
    for micro in range(config.grad_accumulation):
        component = components[((step - 1) * config.grad_accumulation + micro) % len(components)]
        terms = binding_draws(model, component, aux, config, step, micro)
        values = backward_terms(model, conditioner, terms, config, step, scaler, mixed)
        ref, aux_term = values[0], (values[1] if len(values) > 1 else 0.0)
        totals.append((ref + component.aux_weight * aux_term, ref, aux_term))
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return tuple(sum(values) / len(values) for values in zip(*totals))


def train_styleforge(model, clip, vae, sets: TrainingSets, config: StyleForgeConfig,
                     progress: host.StepProgress | None = None, checkpoint_path: Path | None = None,
                     resume: StyleForgeLoRA | None = None) -> TrainingResult:
    check_inputs(config, sets)
    family = host.require_stable_diffusion(model)
    host.require_matching_clip(model, clip)
    config = resumed_config(config, resume, family)
    start_step = resume.steps if resume is not None else 0
    dtype = autocast_dtype(host.compute_device(model), config.precision)
    components, aux = prepare_components(model, vae, sets, config, torch.Generator().manual_seed(config.seed))
    device = host.compute_device(model)
    conditioner = TextConditioner(clip, device, frozen=not config.train_text_encoder)
    losses, ref_losses, aux_losses = [], [], []
    with host.training_context(model, clip, config.gradient_checkpointing):
        targets = host.lora_targets(model, clip, config.include_conv, config.train_text_encoder)
        network = LoRANetwork(targets, config.rank, config.alpha, config.seed)
        if resume is not None:
            network.load_kohya_state(resume.tensors, RESUME_INPUT)
        optimizer = torch.optim.AdamW(network.parameter_groups(config.unet_lr, config.text_encoder_lr),
                                      weight_decay=WEIGHT_DECAY)
        base_lrs = [group["lr"] for group in optimizer.param_groups]
        scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
        mixed = autocast(device, dtype)

        def snapshot(step: int) -> StyleForgeLoRA:
            return StyleForgeLoRA(network.kohya_state(), lora_metadata(config, family, sets, step))

        with network.attached(targets):
            eval_before = evaluation_loss(model, conditioner, components)
            t0 = time.perf_counter()
            for step in range(start_step + 1, config.steps + 1):
                for log, value in zip((losses, ref_losses, aux_losses),
                                      optimizer_step(model, conditioner, components, aux, config, step, optimizer,
                                                     base_lrs, scaler, mixed)):
                    log.append(value)
                if checkpoint_path is not None and config.checkpoint_every and step % config.checkpoint_every == 0:
                    save_lora(snapshot(step), checkpoint_path, CHECKPOINT_PRECISION)
                if progress is not None:
                    shot = None
                    if config.preview_every and step % config.preview_every == 0:
                        shot = preview(model, clip, vae, components[0].prompt,
                                       tuple(components[0].binding.latents.shape[1:]), config.seed)
                    progress.update(step, f"step {step}/{config.steps}  loss {losses[-1]:.4f} "
                                    f"(StyleRef {ref_losses[-1]:.4f}, Aux {aux_losses[-1]:.4f})", shot)
            seconds_per_step = (time.perf_counter() - t0) / max(1, config.steps - start_step)
            eval_after = evaluation_loss(model, conditioner, components)
        lora = snapshot(config.steps)
    lora.metadata.update(eval_loss_before=eval_before, eval_loss_after=eval_after)
    return TrainingResult(lora, losses, ref_losses, aux_losses, eval_before, eval_after, start_step,
                          _notes(config, sets, start_step, seconds_per_step))
