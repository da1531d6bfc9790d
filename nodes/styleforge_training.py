"""The StyleForge dual-binding LoRA trainer node (Single and Multi)."""

import dataclasses
import logging

from comfy_api.latest import io

from .. import comfy_adapter as host
from ..styleforge_core.lora_file import LORA_FOLDER, load_lora
from ..styleforge_core.training import (
    METHODS,
    PASSES,
    RESUME_INPUT,
    SCHEDULES,
    SEPARATE_PASSES_FROM,
    StyleForgeConfig,
    TrainingSets,
    train_styleforge,
)
from ..training_kit.files import path_in
from ..training_kit.memory import CHECKPOINTING_TOOLTIP, GRADIENT_CHECKPOINTING
from ..training_kit.precision import PRECISIONS
from .categories import STYLEFORGE
from .styleforge_types import StyleForgeImagesType, StyleForgeLoRAType
from .training_display import finished
from .training_validation import ValidationType

DEFAULTS = StyleForgeConfig()
NO_RESUME = "[none]"


def _inputs() -> list:
    d = DEFAULTS
    return [
        io.Model.Input("model", tooltip="The SD model to teach the style (SD1.x, SD2.x, SDXL); it stays unchanged."),
        io.Clip.Input("clip", tooltip="The CLIP of the same checkpoint."),
        io.Vae.Input("vae", tooltip="The VAE of the same checkpoint, to encode the images once."),
        StyleForgeImagesType.Input("style_images", tooltip="Single: the StyleRef set (about 15-20 images of the "
                                   "style, people and backgrounds mixed). Multi: the people set. Bound to "
                                   "'[V] style'."),
        StyleForgeImagesType.Input("aux", optional=True, tooltip="The Aux set bound to 'style' (about 15-20 digital "
                                   "paintings, mostly people). Required unless aux_weight is 0."),
        StyleForgeImagesType.Input("backgrounds", optional=True, tooltip="Multi only: the background set, bound to "
                                   "'[W] style'."),
        io.Combo.Input("method", options=list(METHODS), default=d.method,
                       tooltip="Single: one token [V]. Multi: people -> [V], backgrounds -> [W], interleaved."),
        io.String.Input("token", default=d.token, tooltip="The identifier [V]: a rare word (the authors used 'zwx')."),
        io.String.Input("background_token", default=d.background_token,
                        tooltip="Multi only: the identifier [W] of the backgrounds; must differ from token."),
        io.String.Input("style_template", default=d.style_template,
                        tooltip="The StyleRef prompt; '{}' becomes the token. A caption file adds ', <caption>'."),
        io.String.Input("aux_prompt", default=d.aux_prompt, tooltip="The Aux prompt (the paper: 'style')."),
        io.Float.Input("aux_weight", default=d.aux_weight, min=0.0, max=10.0, step=0.05,
                       tooltip="lambda: weight of the Aux term (paper: 1.0). 0 trains without Aux (then no Aux set "
                               "is needed). In Multi, the people component's lambda."),
        io.Float.Input("background_aux_weight", default=d.background_aux_weight, min=0.0, max=10.0, step=0.05,
                       tooltip="Multi only: lambda of the backgrounds component."),
        io.Int.Input("min_aux_images", default=d.min_aux_images, min=1, max=1000,
                     tooltip="Refuse an Aux set smaller than this (the paper uses 15-20)."),
        io.Int.Input("rank", default=d.rank, min=1, max=1024, tooltip="LoRA rank (no larger than the smallest "
                     "adapted layer)."),
        io.Float.Input("alpha", default=d.alpha, min=0.01, max=1024.0, step=0.5,
                       tooltip="LoRA alpha; the update is scaled by alpha / rank."),
        io.Boolean.Input("include_conv", default=d.include_conv,
                         tooltip="Also adapt the UNet's convolutions (default: attention and feed-forward only)."),
        io.Int.Input("steps", default=d.steps, min=1, max=1000000,
                     tooltip="Total optimizer steps (with resume: the target, counting the steps already done)."),
        io.Float.Input("unet_lr", default=d.unet_lr, min=0.0, max=1.0, step=1e-6, tooltip="AdamW learning rate of "
                       "the UNet adapters."),
        io.Float.Input("text_encoder_lr", default=d.text_encoder_lr, min=0.0, max=1.0, step=1e-6,
                       tooltip="Learning rate of text-encoder adapters; 0 keeps the text encoder frozen (faster, "
                               "embeddings cached). The paper trains it too: try 5e-5."),
        io.Combo.Input("lr_schedule", options=list(SCHEDULES), default=d.lr_schedule,
                       tooltip="Learning rate after warmup: constant, or cosine decay to 0."),
        io.Int.Input("warmup_steps", default=d.warmup_steps, min=0, max=100000,
                     tooltip="Linear learning-rate warmup over this many steps."),
        io.Int.Input("batch_size", default=d.batch_size, min=1, max=64,
                     tooltip="StyleRef samples per step (each with one Aux sample)."),
        io.Int.Input("grad_accumulation", default=d.grad_accumulation, min=1, max=1024,
                     tooltip="Batches accumulated per optimizer step."),
        io.Float.Input("min_snr_gamma", default=d.min_snr_gamma, min=0.0, max=100.0, step=0.5,
                       tooltip="Min-SNR loss weighting gamma (5 is usual); 0 = off (the paper)."),
        io.Float.Input("noise_offset", default=d.noise_offset, min=0.0, max=1.0, step=0.01,
                       tooltip="Per-channel noise offset (0.05-0.1 helps very dark or bright styles); 0 = off."),
        io.Int.Input("seed", default=d.seed, min=0, max=2**63 - 1,
                     tooltip="Seed for adapter initialisation, crops, timesteps, noise and sample order."),
        io.Int.Input("resolution", default=d.resolution, min=64, max=2048, step=8,
                     tooltip="Short side resized to this, then a random square crop (paper: 512)."),
        io.Int.Input("crops_per_image", default=d.crops_per_image, min=1, max=16,
                     tooltip="Random crops cached per image (latents are encoded once)."),
        io.Boolean.Input("random_flip", default=d.random_flip, tooltip="Also train on the mirrored images."),
        io.Combo.Input("gradient_checkpointing", options=list(GRADIENT_CHECKPOINTING),
                       default=d.gradient_checkpointing, tooltip=CHECKPOINTING_TOOLTIP),
        io.Combo.Input("passes", options=list(PASSES), default=d.passes,
                       tooltip="How each step's StyleRef and Aux samples go through the UNet. separate: one after "
                               "the other, the same gradients with the activation memory of one sample. one batch: "
                               f"together, faster for small images. auto: separate from {SEPARATE_PASSES_FROM} px."),
        io.Combo.Input("precision", options=list(PRECISIONS), default=d.precision,
                       tooltip="auto: bf16/fp16 autocast on a GPU, fp32 on a CPU."),
        io.Int.Input("checkpoint_every", default=d.checkpoint_every, min=0, max=100000,
                     tooltip="Write the LoRA to models/loras/<checkpoint_name> every N steps (0 = never); "
                             "written atomically, so Cancel leaves the last one intact."),
        io.String.Input("checkpoint_name", default="styleforge/checkpoint",
                        tooltip="Checkpoint file name under models/loras (replaced at each checkpoint)."),
        io.Combo.Input(RESUME_INPUT, options=[NO_RESUME, *host.model_files(LORA_FOLDER)], default=NO_RESUME,
                       tooltip="Continue a StyleForge LoRA from models/loras: its step count, rank and alpha come "
                               "from its metadata."),
        ValidationType.Input("validation", optional=True,
                             tooltip="Training Validation: images from your prompts (write the token: 'a house, zwx "
                                     "style') every N steps, saved, and scored against the StyleRef images when "
                                     "it has a CLIP vision model."),
    ]


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
            inputs=_inputs(),
            outputs=[
                io.Model.Output(display_name="model", tooltip="The model with the trained LoRA applied."),
                io.Clip.Output(display_name="clip", tooltip="The CLIP with the LoRA applied (if it trains it)."),
                StyleForgeLoRAType.Output(display_name="lora", tooltip="The LoRA, for Save StyleForge LoRA."),
                io.Image.Output(display_name="loss_curve"),
            ],
        )

    @classmethod
    def execute(cls, model, clip, vae, style_images, checkpoint_name, resume_from, aux=None, backgrounds=None,
                validation=None, **settings) -> io.NodeOutput:
        """`settings` are the schema's training inputs, named as StyleForgeConfig's fields."""
        config = StyleForgeConfig(**settings)
        config = dataclasses.replace(config, token=config.token.strip(),
                                     background_token=config.background_token.strip())
        checkpoint = None
        if config.checkpoint_every:
            checkpoint = path_in(host.model_folder(LORA_FOLDER), checkpoint_name, "checkpoint_name")
        resume = None
        if resume_from != NO_RESUME:
            resume = load_lora(host.model_file_path(LORA_FOLDER, resume_from, RESUME_INPUT), RESUME_INPUT)
        sets = TrainingSets(style_images, aux, backgrounds)
        bar = host.StepProgress(config.steps)
        result = train_styleforge(model, clip, vae, sets, config, bar, checkpoint, resume, validation)
        for note in result.notes:
            logging.info("StyleForge: %s", note)
        trained_model, trained_clip = host.apply_lora(model, clip, result.trained.tensors)
        curve, shown = finished(cls, result, f"StyleForge {config.method} loss", bar)
        return io.NodeOutput(trained_model, trained_clip, result.trained, curve, ui=shown)
