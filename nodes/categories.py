"""Where this package's nodes appear in ComfyUI's node menu."""

ROOT = "style personalization"
INST = f"{ROOT}/InST"
STYLEFORGE = f"{ROOT}/StyleForge"
