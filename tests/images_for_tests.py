"""IMAGE tensors and files made in tests from the procedural example images."""

import numpy as np
import torch
from PIL import Image

from devhost.example_inputs import content_photo, painting


def to_image_tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0)[None]


def painting_tensor(seed: int = 0) -> torch.Tensor:
    return to_image_tensor(painting(seed))


def content_tensor(seed: int = 0) -> torch.Tensor:
    return to_image_tensor(content_photo(seed))


def score_pixels(image: Image.Image | torch.Tensor) -> int:
    """How many pixels of a loss curve are drawn in its score colour (the CLIP-I line and best-step mark)."""
    from inst_styleforge.training_kit.loss_curve import SCORE

    array = np.asarray(image.convert("RGB"), dtype=int) if isinstance(image, Image.Image) else \
        (image[0].numpy() * 255).round().astype(int)
    return int((np.abs(array - np.array(SCORE)).sum(-1) < 10).sum())


def clip_i(clip_vision, images: list[torch.Tensor], references: list[torch.Tensor]) -> float:
    """CLIP-I computed here, from the published definition: the mean cosine similarity of the CLIP image
    embeddings of `images` to those of `references`, each encoded by ComfyUI's CLIP vision (centre crop)."""
    def unit(batch: list[torch.Tensor]) -> torch.Tensor:
        embeds = torch.cat([clip_vision.encode_image(image, crop=True)["image_embeds"].float() for image in batch])
        return embeds / embeds.norm(dim=-1, keepdim=True)

    with torch.inference_mode():
        return float((unit(images) @ unit(references).T).mean())
