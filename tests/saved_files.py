"""Reading what the nodes saved, as a user's tools would: the metadata of a safetensors file, and the
latent a SaveLatent node wrote."""

import torch
from safetensors import safe_open
from safetensors.torch import load_file


def file_metadata(path) -> dict:
    with safe_open(str(path), framework="pt") as file:
        return file.metadata()


def saved_latent(server, result, node_id: str) -> torch.Tensor:
    """The latent the SaveLatent node `node_id` of a finished prompt wrote."""
    [path] = server.output_files(result, node_id, key="latents")
    return load_file(str(path))["latent_tensor"]
