"""The InST style-inversion trainer node and its options node.

The trainer shows what every run needs (models, painting, steps, learning rate, seed, resolution,
where to save); the encoder's shape and the memory settings have paper or usual defaults and live in
InST Training Options, connected only to change them."""

import logging

from comfy_api.latest import io

from .. import host
from ..inst_core.style import CONTEXTS
from ..inst_core.style_file import STYLE_FOLDER, load_style
from ..inst_core.training import CONTINUE_INPUT, RANGES, InSTTrainingConfig, train_style
from ..training_kit.files import NONE_CHOSEN, model_file_path, path_in
from ..training_kit.memory import CHECKPOINTING_TOOLTIP, GRADIENT_CHECKPOINTING
from ..training_kit.precision import PRECISION_TOOLTIP, PRECISIONS
from .categories import INST
from .inst_types import InSTOptionsType, InSTStyleType
from .training_display import finished
from .training_validation import ValidationType

DEFAULTS = InSTTrainingConfig()


def _saved_styles() -> list[str]:
    return [name for name in host.files.model_files(STYLE_FOLDER) if name.endswith(".safetensors")]


class TrainStyle(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="InST_TrainStyle",
            display_name="Train InST Style",
            category=INST,
            description="Learns a painting's style as a text token (InST): an attention encoder maps the "
                        "painting's CLIP image embedding to a token; UNet, CLIP, VAE stay frozen.",
            is_output_node=True,
            inputs=[
                io.Model.Input("model", tooltip="The model to learn the style for (SD1.x, SD2.x, SDXL, SD3.5; not "
                                                                "FLUX.1, whose DiT reads text through T5-XXL only)."),
                io.Clip.Input("clip", tooltip="The CLIP of the same checkpoint; gradients pass through it."),
                io.Vae.Input("vae", tooltip="The VAE of the same checkpoint, to encode the painting."),
                io.ClipVision.Input("clip_vision", tooltip="CLIP vision model (ViT-L/14 as in the paper)."),
                io.Image.Input("painting", tooltip="The painting; a batch of several paintings of one style "
                               "trains one encoder, each painting with its own token."),
                io.Int.Input("steps", default=DEFAULTS.steps, **RANGES["steps"].widget(),
                             tooltip="Optimizer steps (the official config allows 6100; ~1000 is typical)."),
                io.Float.Input("learning_rate", default=DEFAULTS.learning_rate, **RANGES["learning_rate"].widget(),
                               step=1e-6, tooltip="AdamW learning rate (paper: 1e-4, weight decay 0.01)."),
                io.Int.Input("seed", default=DEFAULTS.seed, **RANGES["seed"].widget(),
                             tooltip="Seed for initialisation, timesteps, noise and flips (paper: 23)."),
                io.Int.Input("resolution", default=DEFAULTS.resolution, **RANGES["resolution"].widget(),
                             tooltip="The painting is resized to resolution x resolution (aspect not kept)."),
                io.String.Input("filename", default="inst/my_style",
                                tooltip="Saved as models/inst_styles/<filename>.safetensors (replacing a file of "
                                        "that name); empty = do not save."),
                InSTOptionsType.Input("options", optional=True,
                                      tooltip="InST Training Options: batch, flips, what the encoder attends to, "
                                              "vectors per token, memory and precision."),
                ValidationType.Input("validation", optional=True,
                                     tooltip="Training Validation: images from your prompts ('*' marks the style) "
                                             "every N steps, saved and scored against the painting."),
            ],
            outputs=[
                InSTStyleType.Output(display_name="style"),
                io.Image.Output(display_name="loss_curve", tooltip="Loss per step, and the validation scores if any."),
            ],
        )

    @classmethod
    def execute(cls, model, clip, vae, clip_vision, painting, filename, options=None, validation=None,
                **settings) -> io.NodeOutput:
        """`settings` and `options` are training inputs, named as InSTTrainingConfig's fields."""
        target = path_in(host.files.model_folder(STYLE_FOLDER), filename, "filename") if filename.strip() else None
        options = dict(options or {})
        continue_from = options.pop(CONTINUE_INPUT, NONE_CHOSEN)
        saved = None
        if continue_from != NONE_CHOSEN:
            saved = load_style(model_file_path(STYLE_FOLDER, continue_from, CONTINUE_INPUT), CONTINUE_INPUT)
        config = InSTTrainingConfig(**settings, **options)
        paintings = [painting[i:i + 1] for i in range(painting.shape[0])]
        bar = host.progress.StepProgress(config.steps)
        result = train_style(model, clip, vae, clip_vision, paintings, config, bar, validation, target, saved)
        for note in result.notes:
            logging.info("InST: %s", note)
        curve, shown = finished(cls, result, "InST loss", bar)
        return io.NodeOutput(result.trained, curve, ui=shown)


class InSTOptions(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="InST_Options",
            display_name="InST Training Options",
            category=INST,
            description="The settings an InST run rarely changes, for Train InST Style's 'options' input. "
                        "Without this node the trainer uses these defaults (the paper's).",
            inputs=[
                io.Int.Input("batch_size", default=DEFAULTS.batch_size, **RANGES["batch_size"].widget(),
                             tooltip="Samples per step (paper: 1)."),
                io.Boolean.Input("random_flip", default=DEFAULTS.random_flip, tooltip="Random horizontal flip, p=0.5."),
                io.Combo.Input("attend_to", options=list(CONTEXTS), default=DEFAULTS.attend_to,
                               tooltip="image_embed: the paper's encoder. patch_tokens: its second attention "
                                       "reads CLIP vision's patch tokens, so attention is not degenerate."),
                io.Int.Input("vectors_per_token", default=DEFAULTS.vectors_per_token,
                             **RANGES["vectors_per_token"].widget(),
                             tooltip="Token vectors the style occupies (paper: 1)."),
                io.Combo.Input("gradient_checkpointing", options=list(GRADIENT_CHECKPOINTING),
                               default=DEFAULTS.gradient_checkpointing, tooltip=CHECKPOINTING_TOOLTIP),
                io.Combo.Input("precision", options=list(PRECISIONS), default=DEFAULTS.precision,
                               tooltip=PRECISION_TOOLTIP),
                io.Combo.Input(CONTINUE_INPUT, options=[NONE_CHOSEN, *_saved_styles()],
                               default=NONE_CHOSEN,
                               tooltip="Continue a style this trainer saved in models/inst_styles up to 'steps' "
                                       "steps in all: its encoder, and AdamW's state from the .optimizer file "
                                       "beside it, so the result equals one longer run."),
            ],
            outputs=[InSTOptionsType.Output(display_name="options")],
        )

    @classmethod
    def execute(cls, **options) -> io.NodeOutput:
        return io.NodeOutput(options)
