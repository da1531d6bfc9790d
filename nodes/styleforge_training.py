"""The StyleForge trainer nodes (Single and Multi) and their options node.

The trainers show what every run needs (models, images, tokens, lambda, rank, steps, learning rate,
resolution, seed); everything else has a paper or usual default and lives in StyleForge Training
Options, connected only when a user wants to change it, as ComfyUI's samplers do with their options.
"""

import dataclasses
import logging

from comfy_api.latest import io

from .. import host
from ..styleforge_core.lora_file import LORA_FOLDER, load_lora
from ..styleforge_core.training import (
    CHECKPOINT_INPUT,
    PASSES,
    RANGES,
    RESUME_INPUT,
    SCHEDULES,
    SEPARATE_PASSES_FROM,
    StyleForgeConfig,
    TrainingSets,
    train_styleforge,
)
from ..training_kit.files import NONE_CHOSEN, model_file_path, path_in
from ..training_kit.memory import CHECKPOINTING_TOOLTIP, GRADIENT_CHECKPOINTING
from ..training_kit.precision import PRECISION_TOOLTIP, PRECISIONS
from .categories import STYLEFORGE
from .styleforge_types import StyleForgeImagesType, StyleForgeLoRAType, StyleForgeOptionsType
from .training_display import finished
from .training_validation import ValidationType

DEFAULTS = StyleForgeConfig()
ALPHA_AS_RANK = 0.0
# The options node's values when none is connected (its own defaults).
OPTION_DEFAULTS = {CHECKPOINT_INPUT: "styleforge/checkpoint", RESUME_INPUT: NONE_CHOSEN, "alpha": ALPHA_AS_RANK}


def _models() -> list:
    return [
        io.Model.Input("model", tooltip="The model to teach the style (SD1.x, SD2.x, SDXL, SD3.5, FLUX.1); it "
                                        "stays unchanged."),
        io.Clip.Input("clip", tooltip="The CLIP of the same checkpoint (FLUX.1: its CLIP-L and T5-XXL pair)."),
        io.Vae.Input("vae", tooltip="The VAE of the same checkpoint, to encode the images once."),
    ]


def _aux() -> list:
    return [StyleForgeImagesType.Input("aux", optional=True, tooltip="The Aux set bound to 'style' (about 15-20 "
                                       "digital paintings, mostly people). Required unless aux_weight is 0.")]


def _token(name: str, default: str, bound: str) -> io.String.Input:
    return io.String.Input(name, default=default, tooltip=f"The identifier {bound}: a rare word (the authors used "
                           f"'{default}'). Generate with '{default} style' in your prompt.")


def _aux_weight(name: str, component: str) -> io.Float.Input:
    return io.Float.Input(name, default=DEFAULTS.aux_weight, **RANGES[name].widget(), step=0.05,
                          tooltip=f"lambda{component}: weight of the Aux term (paper: 1.0); 0 trains without Aux "
                                  "(then no Aux set is needed).")


def _training() -> list:
    d = DEFAULTS
    return [
        io.Int.Input("rank", default=d.rank, **RANGES["rank"].widget(),
                     tooltip="LoRA rank (no larger than the smallest adapted layer)."),
        io.Int.Input("steps", default=d.steps, **RANGES["steps"].widget(),
                     tooltip="Total optimizer steps (with resume: the target, counting the steps already done)."),
        io.Float.Input("unet_lr", default=d.unet_lr, **RANGES["unet_lr"].widget(), step=1e-6,
                       tooltip="AdamW learning rate of the UNet's (SD3.5, FLUX.1: the DiT's) adapters (paper: 1e-4)."),
        io.Int.Input("resolution", default=d.resolution, **RANGES["resolution"].widget(),
                     tooltip="Short side resized to this, then a random square crop (paper: 512; SDXL: 1024); "
                             "with aspect_buckets (options), the area of this square at the image's own aspect."),
        io.Int.Input("seed", default=d.seed, **RANGES["seed"].widget(),
                     tooltip="Seed for adapter initialisation, crops, timesteps, noise and sample order."),
        StyleForgeOptionsType.Input("options", optional=True,
                                    tooltip="StyleForge Training Options: prompts, LoRA alpha and layers, text "
                                            "encoder, schedule, batch, memory, checkpoints, resume."),
        ValidationType.Input("validation", optional=True,
                             tooltip="Training Validation: images from your prompts (write the token: 'a house, zwx "
                                     "style') every N steps, saved, and scored against the StyleRef images when "
                                     "it has a CLIP vision model."),
    ]


def _outputs() -> list:
    return [
        io.Model.Output(display_name="model", tooltip="The model with the trained LoRA applied."),
        io.Clip.Output(display_name="clip", tooltip="The CLIP with the LoRA applied (if it trains it)."),
        StyleForgeLoRAType.Output(display_name="lora", tooltip="The LoRA, for Save StyleForge LoRA."),
        io.Image.Output(display_name="loss_curve", tooltip="Loss per step, and the validation scores if any."),
    ]


def train(cls: type[io.ComfyNode], model, clip, vae, sets: TrainingSets, options: dict | None, validation,
          **settings) -> io.NodeOutput:
    """One run of either trainer node: `settings` are its own inputs, named as StyleForgeConfig's fields."""
    chosen = {**OPTION_DEFAULTS, **(options or {})}
    checkpoint_name, resume_from = chosen.pop(CHECKPOINT_INPUT), chosen.pop(RESUME_INPUT)
    if chosen["alpha"] == ALPHA_AS_RANK:
        chosen["alpha"] = float(settings["rank"])
    config = StyleForgeConfig(**settings, **chosen)
    config = dataclasses.replace(config, token=config.token.strip(), background_token=config.background_token.strip())
    checkpoint = None
    if config.checkpoint_every:
        checkpoint = path_in(host.files.model_folder(LORA_FOLDER), checkpoint_name, CHECKPOINT_INPUT)
    resume = None
    if resume_from != NONE_CHOSEN:
        resume = load_lora(model_file_path(LORA_FOLDER, resume_from, RESUME_INPUT), RESUME_INPUT)
    bar = host.progress.StepProgress(config.steps)
    result = train_styleforge(model, clip, vae, sets, config, bar, checkpoint, resume, validation)
    for note in result.notes:
        logging.info("StyleForge: %s", note)
    trained_model, trained_clip = host.lora.apply_lora(model, clip, result.trained.tensors)
    curve, shown = finished(cls, result, f"StyleForge {config.method} loss", bar)
    return io.NodeOutput(trained_model, trained_clip, result.trained, curve, ui=shown)


class TrainStyleForge(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="StyleForge_Train",
            display_name="Train StyleForge LoRA",
            category=STYLEFORGE,
            description="StyleForge dual-binding personalization: a LoRA that binds the style to '[V] style' while "
                        "Aux images keep 'style' anchored (loss = StyleRef MSE + lambda x Aux MSE).",
            is_output_node=True,
            inputs=[
                *_models(),
                StyleForgeImagesType.Input("style_images", tooltip="The StyleRef set (about 15-20 images of the "
                                           "style, people and backgrounds mixed), bound to '[V] style'."),
                *_aux(),
                _token("token", DEFAULTS.token, "[V]"),
                _aux_weight("aux_weight", ""),
                *_training(),
            ],
            outputs=_outputs(),
        )

    @classmethod
    def execute(cls, model, clip, vae, style_images, aux=None, options=None, validation=None,
                **settings) -> io.NodeOutput:
        return train(cls, model, clip, vae, TrainingSets(style_images, aux), options, validation, method="Single",
                     **settings)


class TrainMultiStyleForge(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="StyleForge_TrainMulti",
            display_name="Train Multi-StyleForge LoRA",
            category=STYLEFORGE,
            description="Multi-StyleForge: one LoRA, two bindings learned in turn, people -> '[V] style' and "
                        "backgrounds -> '[W] style', each with its own Aux weight.",
            is_output_node=True,
            inputs=[
                *_models(),
                StyleForgeImagesType.Input("people", tooltip="The people set, bound to '[V] style'."),
                StyleForgeImagesType.Input("backgrounds", tooltip="The background set, bound to '[W] style'."),
                *_aux(),
                _token("token", DEFAULTS.token, "[V] of the people"),
                _token("background_token", DEFAULTS.background_token, "[W] of the backgrounds (not the token)"),
                _aux_weight("aux_weight", " of the people component"),
                _aux_weight("background_aux_weight", " of the backgrounds component"),
                *_training(),
            ],
            outputs=_outputs(),
        )

    @classmethod
    def execute(cls, model, clip, vae, people, backgrounds, aux=None, options=None, validation=None,
                **settings) -> io.NodeOutput:
        return train(cls, model, clip, vae, TrainingSets(people, aux, backgrounds), options, validation,
                     method="Multi", **settings)


class StyleForgeOptions(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        d = DEFAULTS
        return io.Schema(
            node_id="StyleForge_Options",
            display_name="StyleForge Training Options",
            category=STYLEFORGE,
            description="The settings a StyleForge run rarely changes, for either trainer's 'options' input. "
                        "Without this node the trainers use these defaults.",
            inputs=[
                io.String.Input("style_template", default=d.style_template,
                                tooltip="The StyleRef prompt; '{}' becomes the token. A caption file adds "
                                        "', <caption>'."),
                io.String.Input("aux_prompt", default=d.aux_prompt, tooltip="The Aux prompt (the paper: 'style')."),
                io.Int.Input("min_aux_images", default=d.min_aux_images, **RANGES["min_aux_images"].widget(),
                             tooltip="Refuse an Aux set smaller than this (the paper uses 15-20)."),
                io.Float.Input("alpha", default=OPTION_DEFAULTS["alpha"], **RANGES["alpha"].widget(), step=0.5,
                               tooltip="LoRA alpha; the update is scaled by alpha / rank. 0 = the rank (scale 1)."),
                io.Boolean.Input("include_conv", default=d.include_conv,
                                 tooltip="Also adapt the UNet's convolutions (default: attention and feed-forward)."),
                io.Float.Input("text_encoder_lr", default=d.text_encoder_lr, **RANGES["text_encoder_lr"].widget(),
                               step=1e-6,
                               tooltip="Learning rate of text-encoder adapters; 0 keeps the text encoder frozen "
                                       "(faster, prompts encoded once). The paper trains it too: try 5e-5. "
                                       "FLUX.1: 0 (its text encoders stay frozen)."),
                io.Combo.Input("lr_schedule", options=list(SCHEDULES), default=d.lr_schedule,
                               tooltip="Learning rate after warmup: constant, or cosine decay to 0."),
                io.Int.Input("warmup_steps", default=d.warmup_steps, **RANGES["warmup_steps"].widget(),
                             tooltip="Linear learning-rate warmup over this many steps."),
                io.Int.Input("batch_size", default=d.batch_size, **RANGES["batch_size"].widget(),
                             tooltip="StyleRef samples per step (each with one Aux sample)."),
                io.Int.Input("grad_accumulation", default=d.grad_accumulation, **RANGES["grad_accumulation"].widget(),
                             tooltip="Batches accumulated per optimizer step."),
                io.Float.Input("min_snr_gamma", default=d.min_snr_gamma, **RANGES["min_snr_gamma"].widget(), step=0.5,
                               tooltip="Min-SNR loss weighting gamma (5 is usual); 0 = off (the paper). Epsilon "
                                       "and v models only (not SD3.5 or FLUX.1)."),
                io.Float.Input("noise_offset", default=d.noise_offset, **RANGES["noise_offset"].widget(), step=0.01,
                               tooltip="Per-channel noise offset (0.05-0.1 helps very dark or bright styles); "
                                       "0 = off."),
                io.Int.Input("crops_per_image", default=d.crops_per_image, **RANGES["crops_per_image"].widget(),
                             tooltip="Random crops cached per image (latents are encoded once)."),
                io.Boolean.Input("random_flip", default=d.random_flip, tooltip="Also train on the mirrored images."),
                io.Combo.Input("gradient_checkpointing", options=list(GRADIENT_CHECKPOINTING),
                               default=d.gradient_checkpointing, tooltip=CHECKPOINTING_TOOLTIP),
                io.Combo.Input("passes", options=list(PASSES), default=d.passes,
                               tooltip="How each step's StyleRef and Aux samples go through the UNet. separate: one "
                                       "after the other, the same gradients with the activation memory of one "
                                       "sample. one batch: together, faster for small images. auto: separate "
                                       f"from {SEPARATE_PASSES_FROM} px."),
                io.Combo.Input("precision", options=list(PRECISIONS), default=d.precision,
                               tooltip=PRECISION_TOOLTIP),
                io.Int.Input("checkpoint_every", default=d.checkpoint_every, **RANGES["checkpoint_every"].widget(),
                             tooltip="Write the LoRA to models/loras/<checkpoint_name> every N steps (0 = never); "
                                     "written atomically, so Cancel leaves the last one intact."),
                io.String.Input(CHECKPOINT_INPUT, default=OPTION_DEFAULTS[CHECKPOINT_INPUT],
                                tooltip="Checkpoint file name under models/loras (replaced at each checkpoint)."),
                io.Combo.Input(RESUME_INPUT, options=[NONE_CHOSEN, *host.files.model_files(LORA_FOLDER)],
                               default=NONE_CHOSEN,
                               tooltip="Continue a StyleForge LoRA from models/loras: its step count, rank and "
                                       "alpha come from its metadata, and AdamW's state from the .optimizer file "
                                       "beside it."),
                # last, and optional: workflows and API prompts saved before it keep their values
                io.Boolean.Input("aspect_buckets", default=d.aspect_buckets, optional=True,
                                 tooltip="Train each image at about resolution x resolution pixels in the aspect "
                                         "ratio closest to its own (sides in steps of 64 px, from half to twice "
                                         "the resolution), instead of a square crop: portraits and landscapes "
                                         "keep their whole picture."),
            ],
            outputs=[StyleForgeOptionsType.Output(display_name="options")],
        )

    @classmethod
    def execute(cls, **options) -> io.NodeOutput:
        return io.NodeOutput(options)
