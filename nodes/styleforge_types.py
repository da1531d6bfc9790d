"""The custom socket types that carry StyleForge image sets, training options and trained LoRAs between
nodes."""

from comfy_api.latest import io

StyleForgeImagesType = io.Custom("STYLEFORGE_IMAGES")
StyleForgeLoRAType = io.Custom("STYLEFORGE_LORA")
StyleForgeOptionsType = io.Custom("STYLEFORGE_OPTIONS")
