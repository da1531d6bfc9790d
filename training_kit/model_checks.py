"""Which loaded models the nodes accept: a Stable Diffusion model (an SD1.x, SD2.x or SDXL UNet, or
SD3/SD3.5's MMDiT), and the CLIP of the same checkpoint."""

from __future__ import annotations

from .. import host
from .errors import InputError

# Model families whose UNet takes text cross-attention the way InST and StyleForge need.
STABLE_DIFFUSION_FAMILIES = ("SD15", "SD20", "SD21UnclipL", "SD21UnclipH", "SDXL", "SDXLRefiner", "SSD1B",
                             "Segmind_Vega", "KOALA_700M", "KOALA_1B")
SD3_FAMILY = "SD3"  # ComfyUI's one class for SD3 and SD3.5 (MMDiT, flow matching)


def require_stable_diffusion(model, input_name: str = "model") -> str:
    """ComfyUI's family name of `model`, which must be a Stable Diffusion UNet or SD3/SD3.5's MMDiT."""
    family = host.models.model_family(model)
    if family == SD3_FAMILY and not host.models.has_unet(model):
        return family
    if family not in STABLE_DIFFUSION_FAMILIES or not host.models.has_unet(model):
        raise InputError(input_name, f"is a {family} model; this node needs a Stable Diffusion model: an SD1.x, "
                         "SD2.x or SDXL UNet, or SD3/SD3.5's MMDiT.",
                         "Load a checkpoint of one of those families with Load Checkpoint.")
    return family


def text_encoder_widths(clip) -> dict[str, int]:
    """Token-embedding width of each text encoder, keyed as ComfyUI's tokenizer keys them ("l", "g", "h")."""
    widths = host.models.text_encoder_widths(clip)
    for key, width in widths.items():
        if width is None:
            raise InputError("clip", f"has a text encoder '{key}' this package does not know.",
                             "Use the CLIP output of an SD1.x, SD2.x, SDXL or SD3.5 checkpoint.")
    return widths


def require_matching_clip(model, clip) -> dict[str, int]:
    """The text encoders' widths; the features they give together must be as wide as the model takes."""
    widths = text_encoder_widths(clip)
    width, expected = host.models.text_feature_width(clip), host.models.text_context_width(model)
    if width != expected:
        raise InputError("clip", f"gives {width}-wide text features but the model expects {expected}.",
                         "Use the CLIP loaded from the same checkpoint as the model.")
    return widths
