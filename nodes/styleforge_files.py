"""Save a trained StyleForge LoRA into models/loras, where stock LoraLoader finds it."""

from comfy_api.latest import io, ui

from .. import host
from ..styleforge_core.lora_file import LORA_FOLDER, SAVE_DTYPES, save_lora
from ..training_kit.files import SAVE_AGAIN_FROM_CACHE, path_in, write_failure_named
from .categories import STYLEFORGE
from .styleforge_types import StyleForgeLoRAType


class SaveStyleForgeLoRA(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="StyleForge_SaveLoRA",
            display_name="Save StyleForge LoRA",
            category=STYLEFORGE,
            description="Writes the LoRA with kohya key names and its training metadata; load it with the "
                        "stock Load LoRA node in any workflow.",
            is_output_node=True,
            inputs=[
                StyleForgeLoRAType.Input("lora", tooltip="The LoRA from Train StyleForge LoRA."),
                io.String.Input("filename", default="styleforge/my_style",
                                tooltip="Saved as models/loras/<filename>.safetensors (replacing a file of that "
                                        "name)."),
                io.Combo.Input("precision", options=list(SAVE_DTYPES), default="fp16",
                               tooltip="Tensor precision in the file: fp16 halves the size (the kohya default); "
                                       "fp32 keeps the trained weights exactly."),
            ],
            outputs=[],
        )

    @classmethod
    def execute(cls, lora, filename, precision) -> io.NodeOutput:
        folder = host.files.model_folder(LORA_FOLDER)
        path = path_in(folder, filename, "filename")
        with write_failure_named("filename", path, SAVE_AGAIN_FROM_CACHE):
            save_lora(lora, path, precision)
        return io.NodeOutput(ui=ui.PreviewText(f"saved {path.relative_to(folder)} ({lora.steps} steps)"))
