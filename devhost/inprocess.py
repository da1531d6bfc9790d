"""Import the dev host's ComfyUI in this process (tests, fixture builder, benchmarks).

ComfyUI asks CUDA for devices at `comfy.model_management` import time, so the CPU flag must be set
first; this module is the one place that does it.
"""

import sys

from .paths import BASE_DIR, COMFY_DIR


def import_comfy(cpu: bool = True) -> None:
    """ComfyUI on sys.path, on the CPU, with the dev host's base directory (models, output) as the
    server uses it."""
    if str(COMFY_DIR) not in sys.path:
        sys.path.insert(0, str(COMFY_DIR))
    from comfy.cli_args import args

    args.cpu = cpu
    args.base_directory = str(BASE_DIR)
    import comfy.model_management  # noqa: F401  (device selection happens here, after the flag)


def import_package():
    """This repository imported as the package ComfyUI loads (`inst_styleforge`), so its relative
    imports resolve exactly as they do inside the server."""
    import importlib.util

    from .paths import PACKAGE_LINK_NAME, REPO_ROOT

    if PACKAGE_LINK_NAME in sys.modules:
        return sys.modules[PACKAGE_LINK_NAME]
    import_comfy()
    spec = importlib.util.spec_from_file_location(PACKAGE_LINK_NAME, REPO_ROOT / "__init__.py",
                                                  submodule_search_locations=[str(REPO_ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACKAGE_LINK_NAME] = module
    spec.loader.exec_module(module)
    return module
