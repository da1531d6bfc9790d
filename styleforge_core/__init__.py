"""StyleForge (arXiv 2404.05256): dual-binding LoRA training, Single and Multi.

Importable and testable without the ComfyUI server; every `comfy.*` call goes through
`..host`.
"""
