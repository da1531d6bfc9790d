"""InST and StyleForge style personalization as ComfyUI nodes.

ComfyUI imports this package from `custom_nodes/` and calls `comfy_entrypoint`. The node modules
are imported there, not at package import, so the algorithm cores (`inst_core`, `styleforge_core`)
stay importable without the node API. At start-up the package logs the ComfyUI version and whether
the suite has run on it, and the shipped example inputs are copied into ComfyUI's input folder
(missing files only), so the bundled workflows find them.
"""

from comfy_api.latest import ComfyExtension, io


class StylePersonalizationExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        from .nodes import NODES

        return NODES


async def comfy_entrypoint() -> StylePersonalizationExtension:
    from .host.version import log_host
    from .shipped_inputs import install_example_inputs

    log_host()
    install_example_inputs()
    return StylePersonalizationExtension()
