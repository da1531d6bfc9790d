"""The host seam: every call into ComfyUI's internals (`comfy.*`, `folder_paths`, the server) and
every ComfyUI data layout the cores take apart (tokenizer output, CONDITIONING, LATENT,
CLIP_VISION_OUTPUT, NOISE) goes through these modules, and nothing else does (IMAGE is a plain
(B, H, W, C) tensor, checked in training_kit/images.py). A ComfyUI upgrade that moves an internal
touches one module here. The node API (`comfy_api.latest`) is public and used directly by `nodes/`.
The seam imports nothing from the layers above it.

Each module loads on first use (`host.files`, `host.text`, ...): the batch command reads its flags
and manifest through `files` before the modules that import ComfyUI's model code load.
"""

import importlib

MODULES = ("diffusion", "files", "images", "lora", "memory", "models", "progress", "sampling", "text", "trainable",
           "version")


def __getattr__(name: str):
    if name in MODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
