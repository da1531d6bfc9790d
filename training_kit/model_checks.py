"""Which loaded models the trainers accept: a Stable Diffusion UNet and the CLIP of the same checkpoint."""

from __future__ import annotations

from .. import host
from .errors import InputError

# Model families whose UNet takes text cross-attention the way InST and StyleForge need.
STABLE_DIFFUSION_FAMILIES = ("SD15", "SD20", "SD21UnclipL", "SD21UnclipH", "SDXL", "SDXLRefiner", "SSD1B",
                             "Segmind_Vega", "KOALA_700M", "KOALA_1B")


def require_stable_diffusion(model, input_name: str = "model") -> str:
    """ComfyUI's family name of `model`, which must be a Stable Diffusion UNet."""
    family = host.models.model_family(model)
    if family not in STABLE_DIFFUSION_FAMILIES or not host.models.has_unet(model):
        raise InputError(input_name, f"is a {family} model; this node needs a Stable Diffusion UNet "
                         "(SD1.x, SD2.x or SDXL).", "Load an SD checkpoint with Load Checkpoint.")
    return family


def text_encoder_widths(clip) -> dict[str, int]:
    """Token-embedding width of each text encoder, keyed as ComfyUI's tokenizer keys them ("l", "g", "h")."""
    widths = host.models.text_encoder_widths(clip)
    for key, width in widths.items():
        if width is None:
            raise InputError("clip", f"has a text encoder '{key}' this package does not know.",
                             "Use the CLIP output of an SD1.x, SD2.x or SDXL checkpoint.")
    return widths


def require_matching_clip(model, clip) -> dict[str, int]:
    """The text encoders' widths, which together must be the UNet's cross-attention width."""
    widths = text_encoder_widths(clip)
    expected = host.models.unet_context_width(model)
    if sum(widths.values()) != expected:
        raise InputError("clip", f"gives {sum(widths.values())}-wide text features but the model expects {expected}.",
                         "Use the CLIP loaded from the same checkpoint as the model.")
    return widths
