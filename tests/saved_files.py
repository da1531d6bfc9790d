"""Reading what the nodes saved, as a user's tools would: the metadata of a safetensors file."""

from safetensors import safe_open


def file_metadata(path) -> dict:
    with safe_open(str(path), framework="pt") as file:
        return file.metadata()
