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
