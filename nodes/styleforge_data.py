"""The StyleForge dataset node: a StyleRef, people, backgrounds or Aux image set."""

from comfy_api.latest import io, ui

from ..styleforge_core.datasets import image_set
from .categories import STYLEFORGE
from .styleforge_types import StyleForgeImagesType


class StyleForgeImageSet(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="StyleForge_ImageSet",
            display_name="StyleForge Image Set",
            category=STYLEFORGE,
            description="A set of training images with optional captions (a .txt file of the same name beside "
                        "each image). Unreadable or non-image files are skipped, and images too small to train "
                        "on are refused, each counted in the summary.",
            inputs=[
                io.String.Input("folder", default="",
                                tooltip="A folder under ComfyUI's input directory, e.g. 'styleforge/styleref' "
                                        "(PNG, JPEG, WebP, ...; EXIF rotation applied, transparency on white)."),
                io.Image.Input("images", optional=True,
                               tooltip="Optional IMAGE batch from the graph, added to the folder's images."),
            ],
            outputs=[StyleForgeImagesType.Output(display_name="image_set")],
        )

    @classmethod
    def execute(cls, folder, images=None) -> io.NodeOutput:
        images_set = image_set(folder, images)
        return io.NodeOutput(images_set, ui=ui.PreviewText(images_set.summary()))
