"""InST and StyleForge style personalization as ComfyUI nodes.

ComfyUI imports this package from `custom_nodes/` and calls `comfy_entrypoint`. Nothing is imported
at package import: the node API and the nodes load in `comfy_entrypoint`, so the algorithm cores
(`inst_core`, `styleforge_core`) stay importable without the node API and the batch command checks
its flags before torch and ComfyUI's model code load. At start-up the package logs the ComfyUI
version and whether the suite has run on it, and the shipped example inputs are copied into
ComfyUI's input folder (missing files only), so the bundled workflows find them. `WEB_DIRECTORY`
serves `web/docs/<node id>.md`, the page the frontend's node help panel shows for each node.
"""

WEB_DIRECTORY = "./web"


async def comfy_entrypoint():
    """The extension ComfyUI registers (StylePersonalizationExtension)."""
    from .extension import StylePersonalizationExtension
    from .host.version import log_host
    from .shipped_inputs import install_example_inputs

    log_host()
    install_example_inputs()
    return StylePersonalizationExtension()
