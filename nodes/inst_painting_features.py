"""Node-side input check shared by the InST nodes that read a painting: either a CLIP_VISION_OUTPUT,
or an IMAGE with the CLIP_VISION model to encode it."""

from __future__ import annotations

from .. import host
from ..inst_core.style import ImageFeatures, InSTStyle
from ..training_kit.errors import InputError
from ..training_kit.images import require_image


def painting_features(style: InSTStyle, clip_vision_output=None, painting=None, clip_vision=None) -> ImageFeatures:
    if clip_vision_output is None:
        if painting is None or clip_vision is None:
            raise InputError("clip_vision_output", "is not connected, and neither are both 'painting' and "
                             "'clip_vision'.", "Connect CLIP Vision Encode's output, or the painting and "
                             "the CLIP vision model.")
        clip_vision_output = host.images.clip_vision_encode(clip_vision, require_image(painting, "painting")[:1])
    features = ImageFeatures.from_clip_vision_output(clip_vision_output)
    style.check_features(features, "clip_vision_output" if painting is None else "clip_vision")
    return ImageFeatures(features.embed[:1], features.patch_tokens[:1])
