"""Load, save and import InST styles (models/inst_styles)."""

from comfy_api.latest import io, ui

from .. import host
from ..inst_core.official_import import import_official_style
from ..inst_core.style_file import STYLE_FOLDER, load_style, save_style
from ..training_kit.files import SAVE_AGAIN_FROM_CACHE, model_file_path, path_in, write_failure_named
from .categories import INST
from .inst_types import InSTStyleType

host.files.register_model_folder(STYLE_FOLDER, {".safetensors", ".pt"})


def _files(suffix: str) -> list[str]:
    return [name for name in host.files.model_files(STYLE_FOLDER) if name.endswith(suffix)]


class LoadStyle(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="InST_LoadStyle",
            display_name="Load InST Style",
            category=INST,
            description="A style that Train InST Style or Save InST Style wrote to models/inst_styles, for InST "
                        "Style Conditioning or Export InST Style as Embedding. The file is checked against its "
                        "own spec before anything is built from it.",
            inputs=[io.Combo.Input("style_name", options=_files(".safetensors"),
                                   tooltip="A style from models/inst_styles (.safetensors only).")],
            outputs=[InSTStyleType.Output(display_name="style")],
        )

    @classmethod
    def execute(cls, style_name) -> io.NodeOutput:
        return io.NodeOutput(load_style(model_file_path(STYLE_FOLDER, style_name, "style_name")))


class SaveStyle(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="InST_SaveStyle",
            display_name="Save InST Style",
            category=INST,
            description="Writes a style (an imported official one, or one loaded to keep under another name) to "
                        "models/inst_styles. Train InST Style already saves what it trains.",
            is_output_node=True,
            inputs=[
                InSTStyleType.Input("style", tooltip="The style to save."),
                io.String.Input("filename", default="inst/my_style",
                                tooltip="Saved as models/inst_styles/<filename>.safetensors (replaces a file "
                                        "of that name)."),
            ],
            outputs=[],
        )

    @classmethod
    def execute(cls, style, filename) -> io.NodeOutput:
        folder = host.files.model_folder(STYLE_FOLDER)
        path = path_in(folder, filename, "filename")
        with write_failure_named("filename", path, SAVE_AGAIN_FROM_CACHE):
            save_style(style, path)
        return io.NodeOutput(ui=ui.PreviewText(f"saved {path.relative_to(folder)}"))


class ImportOfficialStyle(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="InST_ImportOfficialStyle",
            display_name="Import Official InST Style",
            category=INST,
            description="Reads an official InST embeddings.pt with a restricted unpickler (only the official "
                        "attention module and tensors; anything else is refused).",
            inputs=[io.Combo.Input("official_file", options=_files(".pt"),
                                   tooltip="An official InST embeddings.pt placed in models/inst_styles.")],
            outputs=[InSTStyleType.Output(display_name="style")],
        )

    @classmethod
    def execute(cls, official_file) -> io.NodeOutput:
        return io.NodeOutput(import_official_style(model_file_path(STYLE_FOLDER, official_file,
                                                                        "official_file")))
