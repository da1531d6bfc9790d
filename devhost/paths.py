"""Where the dev host lives: one ignored folder (default `.devhost` in the repository root)."""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DEVHOST = Path(os.environ.get("DEVHOST", REPO_ROOT / ".devhost")).resolve()
COMFY_DIR = DEVHOST / "ComfyUI"
BASE_DIR = DEVHOST / "base"
PYTHON = DEVHOST / "venv" / "bin" / "python"
FIXTURE_CACHE = DEVHOST / "fixtures"
PACKAGE_LINK_NAME = "inst_styleforge"
# The newest ComfyUI frontend (devhost/install.sh installs it beside the pinned one), served with --front-end-root.
NEWEST_FRONTEND = DEVHOST / "frontends" / "newest" / "comfyui_frontend_package" / "static"
TEMPLATES = REPO_ROOT / "example_workflows"  # the bundled workflows, where ComfyUI's template browser finds them
