"""Development host: the real ComfyUI server and tiny real-architecture models for tests and examples.

Nothing here ships to users' ComfyUI; it is for development, the bundled examples and CI.
"""
