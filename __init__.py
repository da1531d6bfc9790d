"""InST and StyleForge style personalization as ComfyUI nodes.

ComfyUI imports this package from `custom_nodes/` and calls `comfy_entrypoint`. The node modules
are imported there, not at package import, so the algorithm cores (`inst_core`, `styleforge_core`)
stay importable without the node API.
"""

from comfy_api.latest import ComfyExtension, io


class StylePersonalizationExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        from .nodes import NODES

        return NODES


async def comfy_entrypoint() -> StylePersonalizationExtension:
    return StylePersonalizationExtension()
