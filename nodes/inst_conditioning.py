"""Use a learned InST style: as CONDITIONING for any sampler, or exported as a stock embedding."""

from comfy_api.latest import io, ui

from .. import host
from ..inst_core.embedding_export import embedding_name, save_embedding
from ..inst_core.style import DEFAULT_PLACEHOLDER
from ..inst_core.style_prompt import StylePrompt, require_clip_text_encoders
from ..training_kit.files import SAVE_AGAIN_FROM_CACHE, inside, write_failure_named
from ..training_kit.model_checks import text_encoder_widths
from .categories import INST
from .inst_painting_features import painting_features
from .inst_types import InSTStyleType

EMBEDDINGS_FOLDER = "embeddings"


def _painting_inputs() -> list:
    return [
        io.ClipVisionOutput.Input("clip_vision_output", optional=True,
                                  tooltip="CLIP Vision Encode of the painting (or connect painting + clip_vision)."),
        io.Image.Input("painting", optional=True, tooltip="The painting, if clip_vision_output is not connected."),
        io.ClipVision.Input("clip_vision", optional=True, tooltip="CLIP vision model to encode 'painting'."),
    ]


class StyleConditioning(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="InST_StyleConditioning",
            display_name="InST Style Conditioning",
            category=INST,
            description="Encodes a prompt in which the placeholder is replaced by the painting's style token.",
            inputs=[
                io.Clip.Input("clip", tooltip="CLIP of the model the style was trained on."),
                InSTStyleType.Input("style", tooltip="A trained, loaded or imported InST style."),
                io.String.Input("text", multiline=True, default=f"a portrait in the style of {DEFAULT_PLACEHOLDER}",
                                tooltip="The prompt; the placeholder marks where the style token goes. Text "
                                        "without content words around it gives the style alone."),
                io.String.Input("placeholder", default=DEFAULT_PLACEHOLDER,
                                tooltip="The word in the prompt that stands for the style (one token)."),
                *_painting_inputs(),
            ],
            outputs=[io.Conditioning.Output()],
        )

    @classmethod
    def execute(cls, clip, style, text, placeholder, clip_vision_output=None, painting=None,
                clip_vision=None) -> io.NodeOutput:
        require_clip_text_encoders(clip)
        style.check_text_encoders(text_encoder_widths(clip))
        features = painting_features(style, clip_vision_output, painting, clip_vision)
        prompt = StylePrompt(clip, text, placeholder, style.spec.n_vectors)
        vectors = {key: v[0] for key, v in style.vectors(features).items()}
        return io.NodeOutput(host.text.encode_tokens(clip, prompt.tokens(vectors)))


class ExportEmbedding(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="InST_ExportEmbedding",
            display_name="Export InST Style as Embedding",
            category=INST,
            description="Writes the painting's style token to models/embeddings, usable in any prompt of "
                        "stock CLIP Text Encode as embedding:NAME.",
            is_output_node=True,
            inputs=[
                InSTStyleType.Input("style", tooltip="A trained, loaded or imported InST style."),
                io.String.Input("name", default="inst_style",
                                tooltip="File name in models/embeddings (replaces one of that name)."),
                *_painting_inputs(),
            ],
            outputs=[io.String.Output(display_name="prompt_word", tooltip="embedding:NAME, to put in a prompt.")],
        )

    @classmethod
    def execute(cls, style, name, clip_vision_output=None, painting=None, clip_vision=None) -> io.NodeOutput:
        relative = embedding_name(name, "name")
        features = painting_features(style, clip_vision_output, painting, clip_vision)
        folder = host.files.model_folder(EMBEDDINGS_FOLDER)
        path = inside(folder, relative, "name")
        with write_failure_named("name", path, SAVE_AGAIN_FROM_CACHE):
            save_embedding(style, features, path)
        word = f"embedding:{relative.with_suffix('').as_posix()}"
        return io.NodeOutput(word, ui=ui.PreviewText(word))
