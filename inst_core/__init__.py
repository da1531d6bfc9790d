"""InST (inversion-based style transfer, arXiv 2211.13203): style encoder, training, inversion.

Importable and testable without the ComfyUI server; every `comfy.*` call goes through
`..host`.
"""
