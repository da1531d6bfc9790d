"""Import the dev host's ComfyUI and this package in this process (tests, fixture builder,
benchmarks), the way the batch command does: with the package's own bootstrap (batch/bootstrap.py),
which sets ComfyUI's CPU flag and base directory before `comfy.model_management` picks a device."""

import importlib.util

from .paths import BASE_DIR, COMFY_DIR, REPO_ROOT


def _bootstrap():
    spec = importlib.util.spec_from_file_location("inst_styleforge_bootstrap", REPO_ROOT / "batch" / "bootstrap.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def import_comfy(cpu: bool = True) -> None:
    """ComfyUI on sys.path, on the CPU, with the dev host's base directory (models, output) as the
    server uses it."""
    _bootstrap().import_comfy(str(COMFY_DIR), str(BASE_DIR), cpu)


def import_package(cpu: bool = True):
    """This repository imported as the package ComfyUI loads (`inst_styleforge`), so its relative
    imports resolve exactly as they do inside the server."""
    return _bootstrap().load_package(str(COMFY_DIR), str(REPO_ROOT), str(BASE_DIR), cpu)
