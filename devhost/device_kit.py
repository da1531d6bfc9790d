"""The device kit: what a bare GPU machine needs, beside this repository, to run `bench/device_run.sh`.

Such a machine has Python with a CUDA build of torch and the common ML packages, but no ComfyUI and no
package index, and what travels to it is limited (64 MiB with the repository). The kit is one ignored
folder laid out as a dev host (`DEVHOST=.devkit`, see `devhost/paths.py`):

- `ComfyUI/`: the dev host's ComfyUI tree without its tests, its API nodes (they call web services) and
  the tokenizers of model families other than SD1/SD2/SDXL;
- `wheels/`: the packages ComfyUI imports that such a machine lacks (`KIT_PACKAGES`), at the versions the
  dev host runs, for the machine's Python (3.12, x86-64 Linux).

The fixtures are built there, on first use, like everywhere else.

    .devhost/venv/bin/python -m devhost.device_kit     # (re)writes .devkit/ and prints its size
"""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
from pathlib import Path

from .paths import COMFY_DIR, REPO_ROOT

KIT_DIR = REPO_ROOT / ".devkit"
# What `import comfy.sd`, `comfy.samplers` and this package's `comfy_api.latest` need beyond the GPU
# image's packages (`av` for comfy_api's video types, `torchsde` for the SDE samplers).
KIT_PACKAGES = ("av", "torchsde", "trampoline")
DEVICE_PYTHON = "3.12"
DEVICE_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
LEFT_BEHIND = ("__pycache__", "tests", "tests-unit", "comfy_api_nodes", "llama_tokenizer", "qwen25_tokenizer")
TRAVEL_LIMIT_MIB = 64  # the repository and the kit together


def _size_mib(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()) / 2**20


def _repository_mib() -> float:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True).stdout
    return sum((REPO_ROOT / name).stat().st_size for name in files.decode().split("\0") if name) / 2**20


def _download_wheels(target: Path) -> None:
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in KIT_PACKAGES]
    platforms = [arg for p in DEVICE_PLATFORMS for arg in ("--platform", p)]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", DEVICE_PYTHON, "--implementation", "cp", *platforms,
                    "-d", str(target), *pins], check=True)


def build() -> Path:
    """Write the kit afresh (a temporary folder renamed into place) and return its folder."""
    staging = KIT_DIR.with_name(KIT_DIR.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(COMFY_DIR, staging / "ComfyUI", ignore=shutil.ignore_patterns(*LEFT_BEHIND), symlinks=True)
    _download_wheels(staging / "wheels")
    shutil.rmtree(KIT_DIR, ignore_errors=True)
    staging.rename(KIT_DIR)
    return KIT_DIR


def main() -> None:
    kit = build()
    kit_mib, repo_mib = _size_mib(kit), _repository_mib()
    print(f"device kit: {kit} ({kit_mib:.1f} MiB; with the repository {kit_mib + repo_mib:.1f} of "
          f"{TRAVEL_LIMIT_MIB} MiB that travel)")
    if kit_mib + repo_mib > TRAVEL_LIMIT_MIB:
        sys.exit(f"device kit: too large to travel; leave more of ComfyUI behind (LEFT_BEHIND in {__file__})")


if __name__ == "__main__":
    main()
