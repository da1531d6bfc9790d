"""The ComfyUI extension this package registers: its node list, imported when ComfyUI asks for it."""

from comfy_api.latest import ComfyExtension, io


class StylePersonalizationExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        from .nodes import NODES

        return NODES
