"""The custom socket types that carry StyleForge image sets and trained LoRAs between nodes."""

from comfy_api.latest import io

StyleForgeImagesType = io.Custom("STYLEFORGE_IMAGES")
StyleForgeLoRAType = io.Custom("STYLEFORGE_LORA")
