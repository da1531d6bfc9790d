"""The custom socket type that carries a learned InST style between nodes."""

from comfy_api.latest import io

InSTStyleType = io.Custom("INST_STYLE")
