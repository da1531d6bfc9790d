"""The custom socket types that carry a learned InST style and the trainer's options between nodes."""

from comfy_api.latest import io

InSTStyleType = io.Custom("INST_STYLE")
InSTOptionsType = io.Custom("INST_OPTIONS")
