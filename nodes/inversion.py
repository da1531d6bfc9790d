"""Nodes of InST's inference side: latent AdaIN (and the stochastic noise inversion)."""

from comfy_api.latest import io

from ..inst_core.adain import adain
from .categories import INST


class LatentAdaIN(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="InST_LatentAdaIN",
            display_name="Latent AdaIN (InST)",
            category=INST,
            description="Gives the content latent the per-channel mean and std of the style latent, "
                        "as InST does before inverting the content.",
            inputs=[
                io.Latent.Input("content", tooltip="Latent of the content image (VAE Encode)."),
                io.Latent.Input("style", tooltip="Latent of the painting; its size may differ from the content."),
            ],
            outputs=[io.Latent.Output(display_name="latent")],
        )

    @classmethod
    def execute(cls, content, style) -> io.NodeOutput:
        out = dict(content)
        out["samples"] = adain(content["samples"], style["samples"])
        return io.NodeOutput(out)
