"""ComfyUI's folders: models, input and output."""

from __future__ import annotations

import os
from pathlib import Path

import folder_paths


def register_model_folder(name: str, extensions: set[str]) -> None:
    """A model folder of this package under ComfyUI's models directory (e.g. models/inst_styles)."""
    path = os.path.join(folder_paths.models_dir, name)
    if name not in folder_paths.folder_names_and_paths:
        folder_paths.folder_names_and_paths[name] = ([path], set(extensions))


def model_folder(name: str) -> Path:
    return Path(folder_paths.get_folder_paths(name)[0])


def model_files(name: str) -> list[str]:
    return folder_paths.get_filename_list(name)


def model_file(folder: str, filename: str) -> Path | None:
    """The full path of a file listed in a model folder; None when it is not there."""
    path = folder_paths.get_full_path(folder, filename)
    return None if path is None else Path(path)


def input_directory() -> Path:
    return Path(folder_paths.get_input_directory())


def input_subfolders() -> list[str]:
    """Every folder under the input directory, as paths relative to it with '/' (ComfyUI's own dataset
    nodes list these)."""
    return folder_paths.get_input_subfolders()


def output_directory() -> Path:
    return Path(folder_paths.get_output_directory())
