"""Load ComfyUI and this package into a plain Python process (the batch command, each Ray worker),
as ComfyUI's server loads them: ComfyUI's folder on sys.path, its device flags set before
`comfy.model_management` picks a device, its folders pointed at the user's ComfyUI, and this
package imported under one fixed name so its relative imports resolve.

Standard library only: a Ray worker runs this before anything of the package can be imported.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

PACKAGE_NAME = "inst_styleforge"
# Ray gives its servers the machine's network address unless it believes it runs where clusters are not
# supported (Windows, macOS); there it keeps them on 127.0.0.1. This setting says so; Ray reads it when
# first imported. Ray's own guidance is never to expose it to untrusted networks.
LOCAL_RAY = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def keep_ray_on_loopback() -> None:
    """Every Ray server this process (and the workers it starts) runs listens on 127.0.0.1 only. For a
    Ray started on this machine; call before ray is imported."""
    os.environ.update(LOCAL_RAY)


def comfy_flags(comfy_dir: str, base_dir: str | None = None, cpu: bool = False) -> None:
    """ComfyUI importable from `comfy_dir`, its flags set before anything of it reads them: the device
    (`comfy.model_management` picks one when first imported) and the folders (`folder_paths` reads
    them when first imported). `base_dir` holds models/, input/ and output/ when they are not in
    `comfy_dir`."""
    if comfy_dir not in sys.path:
        sys.path.insert(0, comfy_dir)
    from comfy.cli_args import args

    args.cpu = args.cpu or cpu
    if base_dir:
        args.base_directory = base_dir


def import_comfy(comfy_dir: str, base_dir: str | None = None, cpu: bool = False) -> None:
    """ComfyUI with its flags set (`comfy_flags`) and its device picked."""
    comfy_flags(comfy_dir, base_dir, cpu)
    import comfy.model_management  # noqa: F401  (device selection happens here, after the flags)


def load_package(comfy_dir: str, package_dir: str, base_dir: str | None = None, cpu: bool = False):
    """The package module (once per process), with ComfyUI's flags set first; ComfyUI's model code
    loads when the package first uses it."""
    if PACKAGE_NAME in sys.modules:
        return sys.modules[PACKAGE_NAME]
    comfy_flags(comfy_dir, base_dir, cpu)
    spec = importlib.util.spec_from_file_location(PACKAGE_NAME, Path(package_dir) / "__init__.py",
                                                  submodule_search_locations=[package_dir])
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACKAGE_NAME] = module
    spec.loader.exec_module(module)
    return module


def worker_setup_hook(comfy_dir: str, package_dir: str, base_dir: str | None, cpu: bool):
    """What a Ray worker runs when it starts (`worker_process_setup_hook`), before any job arrives."""
    def load_inst_styleforge() -> None:
        load_package(comfy_dir, package_dir, base_dir, cpu)

    return load_inst_styleforge
