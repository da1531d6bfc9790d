"""The StyleForge dataset node: a StyleRef, people, backgrounds or Aux image set."""

from comfy_api.latest import io, ui

from .. import host
from ..styleforge_core.datasets import image_set
from ..training_kit.files import NONE_CHOSEN
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
                io.Combo.Input("folder", options=[NONE_CHOSEN, *host.files.input_subfolders()], default=NONE_CHOSEN,
                               tooltip="A folder of images under ComfyUI's input directory (PNG, JPEG, WebP, ...; "
                                       "EXIF rotation applied, transparency on white). New folders: copy your "
                                       "images into ComfyUI/input/<a folder>, then press R to refresh this "
                                       "list. A typed path under input/ (API prompts) is taken too."),
                io.Image.Input("images", optional=True,
                               tooltip="Optional IMAGE batch from the graph, added to the folder's images."),
            ],
            outputs=[StyleForgeImagesType.Output(display_name="image_set")],
        )

    @classmethod
    def validate_inputs(cls, folder) -> bool:
        """Taking `folder` here replaces ComfyUI's check that it is one of the listed folders: a path
        typed into an API prompt, or a folder made after the list was loaded, is accepted too, and
        execute says clearly when it does not exist."""
        return True

    @classmethod
    def execute(cls, folder, images=None) -> io.NodeOutput:
        images_set = image_set(folder, images)
        return io.NodeOutput(images_set, ui=ui.PreviewText(images_set.summary()))
