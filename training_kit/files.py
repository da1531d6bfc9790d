"""Files both trainers write and read: names users type, atomic writes (checkpoints and results),
and `.safetensors` reads (never a pickle)."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .. import host
from .errors import InputError

PICK_FROM_LIST = "Pick a file from the list, or refresh the page after adding one."
NONE_CHOSEN = "[none]"  # the first entry of a node's list of files or folders: none of them
# What a user still has when a save node cannot write: what it saves is in ComfyUI's cache.
SAVE_AGAIN_FROM_CACHE = "What it saves is still in ComfyUI's cache: queue the prompt again and only the save runs."

_NAME_PART = re.compile(r"^[\w][\w .+-]*$")
# File systems take 255 bytes per name; the temporary name of an atomic write adds about 15 to the
# file's name (and the suffix is added to the last part), so a typed part is limited below that.
MAX_NAME_PART_BYTES = 200
MAX_NAME_BYTES = 1000


def safe_relative_name(name: str, input_name: str, suffix: str = ".safetensors") -> Path:
    """A user-typed file name (sub-folders allowed) that stays inside its target folder.

    Refuses absolute paths, '..', empty parts and odd characters instead of normalising them, so
    what is saved is what the user asked for."""
    name = name.strip().replace("\\", "/")
    if name.endswith(suffix):
        name = name[: -len(suffix)]
    parts = name.split("/")
    if not name or name.startswith("/") or any(p in ("", ".", "..") or not _NAME_PART.match(p) for p in parts):
        raise InputError(input_name, f"'{name}' is not a plain file name.",
                         "Use letters, digits, spaces, '-', '_' or '.', and '/' only between sub-folder names.")
    longest = max(len(p.encode()) for p in parts)
    if longest > MAX_NAME_PART_BYTES or len(name.encode()) > MAX_NAME_BYTES:
        raise InputError(input_name, f"'{name[:40]}...' is too long to save ({longest} bytes in one name, "
                         f"{len(name.encode())} in all).", f"Use names of at most {MAX_NAME_PART_BYTES} bytes "
                         f"between '/' and {MAX_NAME_BYTES} in all.")
    return Path(*parts[:-1], parts[-1] + suffix)


def inside(folder: Path, relative: Path, input_name: str = "filename") -> Path:
    target = (folder / relative).resolve()
    if folder.resolve() not in target.parents:
        raise InputError(input_name, f"'{relative}' would leave {folder}.", "Use a plain file name.")
    return target


def path_in(folder: Path, name: str, input_name: str, suffix: str = ".safetensors") -> Path:
    """Where a user-typed name saves: a plain relative name (checked as typed), still inside `folder`
    once resolved (symlinks included), not a folder, in a folder this process can write to. Checked
    when the node starts, so a run never trains to the end and then cannot save."""
    target = inside(folder, safe_relative_name(name, input_name, suffix), input_name)
    if target.is_dir():
        raise InputError(input_name, f"'{name}' is a folder in {folder}.", "Pick a file name.")
    require_writable(target.parent, input_name)
    return target


def require_writable(folder: Path, input_name: str) -> None:
    """`folder` exists (created if needed) and a file can be created in it: permissions, a read-only
    or immutable folder, or a full table of files show here, by a probe file removed at once."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-check.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        raise InputError(input_name, f"cannot write to {folder} ({error.strerror}).",
                         "Pick another name, or make the folder writable.") from None


@contextlib.contextmanager
def write_failure_named(input_name: str, path: Path, kept: str) -> Iterator[None]:
    """A write of `path` that fails (disk full, permissions, a folder made read-only while a run goes on)
    as an error on `input_name` that names the folder and says what the user still has: `kept`. The
    writes are atomic, so no partial file is left."""
    try:
        yield
    except OSError as error:
        raise InputError(input_name, f"could not write {path.name} to {path.parent} ({error.strerror or error}). "
                         f"{kept}", "Free space there or make the folder writable (or pick another name), then "
                         "queue the prompt again.") from None


def _new_file_mode() -> int:
    """The mode open() gives a new file under the process's umask (0644 under the usual 022)."""
    try:
        umask = int(re.search(r"^Umask:\s+([0-7]+)", Path("/proc/self/status").read_text(), re.M).group(1), 8)
    except (OSError, AttributeError):  # no /proc (macOS, Windows): read it by setting it, briefly
        umask = os.umask(0)
        os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_write(path: Path) -> Iterator[str]:
    """A temporary file in `path`'s folder to write to, renamed onto `path` only when the block ends
    without an error: readers never see a partial file, and a failed write leaves nothing behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        # not the temporary file's owner-only 0600: other users read it, as they read ComfyUI's own saves
        os.chmod(tmp, _new_file_mode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_save_safetensors(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> Path:
    with atomic_write(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp, metadata=metadata)
    return path


def read_safetensors(path: Path, input_name: str, fix: str,
                     suffix: str = ".safetensors") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and string metadata of a file in safetensors format named `*<suffix>`. Any other name is
    refused, and nothing is ever unpickled; a damaged file is reported on `input_name` with `fix`."""
    if path.suffix != suffix:
        raise InputError(input_name, f"'{path.name}' is not a {suffix} file.", fix)
    try:
        with safe_open(str(path), framework="pt") as file:
            return {key: file.get_tensor(key) for key in file.keys()}, file.metadata() or {}
    except Exception as error:  # safetensors reports damaged headers with its own exception types
        raise InputError(input_name, f"'{path.name}' is not a readable safetensors file ({error}).", fix) from None


def int_in_range(value, low: int, high: int) -> bool:
    """Whether a value read from a file's metadata is an integer (not a bool) in [low, high]."""
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def model_file_path(folder: str, filename: str, input_name: str, fix: str = PICK_FROM_LIST) -> Path:
    """The file `filename` of ComfyUI's model folder `folder`, chosen on input `input_name`."""
    path = host.files.model_file(folder, filename)
    if path is None:
        raise InputError(input_name, f"'{filename}' is not in models/{folder}.", fix)
    return path
