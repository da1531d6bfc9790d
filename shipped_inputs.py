"""The example inputs the package ships (`example_inputs/`: a painting, a content photo and StyleForge
image sets, drawn by us), copied into the user's ComfyUI input folder so the bundled workflows run as
they open: the two pictures as `inst_styleforge_<name>` in the input folder itself, where Load Image
lists its files (a picture in a subfolder is not in its list, and newer frontends report it missing),
and the image sets as folders under `inst_styleforge/`. A file already there is never replaced: the
user may have put their own picture in its place."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from . import host
from .training_kit.files import atomic_write

SHIPPED = Path(__file__).parent / "example_inputs"
INPUT_SUBFOLDER = "inst_styleforge"


def input_name(source: Path) -> str:
    """Where a shipped file goes, relative to the input folder (as Load Image and the image sets name it)."""
    relative = source.relative_to(SHIPPED)
    if len(relative.parts) == 1:  # a picture for Load Image
        return f"{INPUT_SUBFOLDER}_{relative.name}"
    return f"{INPUT_SUBFOLDER}/{relative.as_posix()}"


def install_example_inputs() -> int:
    """Copy every shipped example missing from the input folder (temp file, then rename); returns how
    many were copied. A read-only input folder is logged, never fatal."""
    target = host.files.input_directory()
    copied = 0
    try:
        for source in sorted(p for p in SHIPPED.rglob("*") if p.is_file()):
            destination = target / input_name(source)
            if destination.exists():
                continue
            with atomic_write(destination) as tmp:
                shutil.copyfile(source, tmp)
            copied += 1
    except OSError as error:
        logging.warning("inst_styleforge: could not copy the example inputs to %s (%s); the bundled workflows "
                        "need your own images there", target, error)
    return copied
