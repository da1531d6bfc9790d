"""The validation settings node both trainers take: prompts, how often, seeds, where the images go,
and the CLIP vision model that scores them."""

from comfy_api.latest import io

from ..training_kit.validation import ValidationSettings, validation_prompts
from .categories import ROOT

ValidationType = io.Custom("TRAINING_VALIDATION")
DEFAULTS = ValidationSettings()


class TrainingValidation(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="StylePersonalization_Validation",
            display_name="Training Validation",
            category=ROOT,
            description="Images from your prompts every N steps while a trainer runs, with fixed seeds, saved to "
                        "output/ with the step in the name; with a CLIP vision model, a style score (CLIP-I) per "
                        "round on the loss curve and the best step named on the trainer.",
            inputs=[
                io.String.Input("prompts", multiline=True, default="",
                                tooltip="One prompt per line. InST: '*' marks the style ('a house in the style of "
                                        "*'). StyleForge: write the token ('a house, zwx style'). Empty: the "
                                        "trainer's own style prompt."),
                io.Int.Input("every", default=DEFAULTS.every, min=1, max=100000,
                             tooltip="Validate every N steps (and before the first step and at the last)."),
                io.Int.Input("seed", default=DEFAULTS.seed, min=0, max=2**63 - 1, control_after_generate=False,
                             tooltip="Seed of the first prompt's image (the next prompts use seed+1, ...): the "
                                     "same at every round, so images differ only by training."),
                io.Int.Input("steps", default=DEFAULTS.steps, min=1, max=200, tooltip="Sampling steps (euler)."),
                io.Float.Input("cfg", default=DEFAULTS.cfg, min=0.0, max=30.0, step=0.1,
                               tooltip="Classifier-free guidance against the empty prompt."),
                io.String.Input("filename_prefix", default=DEFAULTS.filename_prefix,
                                tooltip="Images go to output/<prefix>_<run>_step<N>_<k>.png, the curve to "
                                        "output/<prefix>_<run>_curve.png."),
                io.ClipVision.Input("clip_vision", optional=True,
                                    tooltip="Scores each round: mean cosine similarity of CLIP image embeddings to "
                                            "the training images (CLIP-I). InST uses its own when none is set."),
            ],
            outputs=[ValidationType.Output(display_name="validation")],
        )

    @classmethod
    def execute(cls, prompts, every, seed, steps, cfg, filename_prefix, clip_vision=None) -> io.NodeOutput:
        return io.NodeOutput(ValidationSettings(validation_prompts(prompts), every, seed, steps, cfg,
                                                filename_prefix.strip(), clip_vision))
