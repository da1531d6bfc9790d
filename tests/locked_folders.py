"""Folders that stop taking files, as a full or read-only disk does: chattr +i, which binds root too."""

import contextlib
import subprocess


@contextlib.contextmanager
def immutable(folder):
    """`folder` where nothing can be created, not even by root, until the block ends."""
    subprocess.run(["chattr", "+i", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
