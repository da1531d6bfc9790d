"""The example inputs the package ships (`example_inputs/`: a painting, a content photo and StyleForge
image sets, drawn by us), copied into the user's ComfyUI input folder as `inst_styleforge/` so the
bundled workflows run as they open. A file already there is never replaced: the user may have put
their own picture in its place."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from . import comfy_adapter as host

SHIPPED = Path(__file__).parent / "example_inputs"
INPUT_SUBFOLDER = "inst_styleforge"


def install_example_inputs() -> int:
    """Copy every shipped example missing from input/inst_styleforge/ (temp file, then rename);
    returns how many were copied. A read-only input folder is logged, never fatal."""
    target = host.input_folder() / INPUT_SUBFOLDER
    copied = 0
    try:
        for source in sorted(p for p in SHIPPED.rglob("*") if p.is_file()):
            destination = target / source.relative_to(SHIPPED)
            if destination.exists():
                continue
            destination.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=".tmp", dir=destination.parent)
            os.close(fd)
            shutil.copyfile(source, tmp)
            os.replace(tmp, destination)
            copied += 1
    except OSError as error:
        logging.warning("inst_styleforge: could not copy the example inputs to %s (%s); the bundled workflows "
                        "need your own images there", target, error)
    return copied
