"""Which loaded models the nodes accept: a family the method carries over to (Stable Diffusion: an
SD1.x, SD2.x or SDXL UNet, or SD3/SD3.5's MMDiT; for StyleForge and the inversion also FLUX.1 [dev]'s
DiT), and the CLIP loaded with the model."""

from __future__ import annotations

from dataclasses import dataclass

from .. import host
from .errors import InputError

# Model families whose UNet takes text cross-attention the way InST and StyleForge need.
UNET_FAMILIES = ("SD15", "SD20", "SD21UnclipL", "SD21UnclipH", "SDXL", "SDXLRefiner", "SSD1B", "Segmind_Vega",
                 "KOALA_700M", "KOALA_1B")
SD3_FAMILY = "SD3"  # ComfyUI's one class for SD3 and SD3.5 (MMDiT, flow matching)
# FLUX.1 [dev] (guidance-distilled). Not [schnell] (ComfyUI's FluxSchnell): timestep-distilled for few-step
# sampling, it needs training tricks of its own (such as ai-toolkit's assistant adapter) that this has not.
FLUX_FAMILIES = ("Flux",)


@dataclass(frozen=True)
class Families:
    """The model families a node takes (ComfyUI's names), and how its error message names them."""

    names: tuple[str, ...]
    described: str


STABLE_DIFFUSION = Families((*UNET_FAMILIES, SD3_FAMILY),
                            "a Stable Diffusion model: an SD1.x, SD2.x or SDXL UNet, or SD3/SD3.5's MMDiT")
STABLE_DIFFUSION_OR_FLUX = Families((*STABLE_DIFFUSION.names, *FLUX_FAMILIES),
                                    f"{STABLE_DIFFUSION.described}, or FLUX.1 [dev]'s DiT")


def require_model_family(model, families: Families, input_name: str = "model") -> str:
    """ComfyUI's family name of `model`, which must be one of `families` (a UNet family's model being a
    UNet, a DiT family's not)."""
    family = host.models.model_family(model)
    if family not in families.names or host.models.has_unet(model) != (family in UNET_FAMILIES):
        raise InputError(input_name, f"is a {family} model; this node needs {families.described}.",
                         "Load a model of one of those families (Load Checkpoint, or Load Diffusion Model with its "
                         "text encoders).")
    return family


def text_encoder_widths(clip) -> dict[str, int]:
    """Token-embedding width of each text encoder, keyed as ComfyUI's tokenizer keys them ("l", "g", "h")."""
    widths = host.models.text_encoder_widths(clip)
    for key, width in widths.items():
        if width is None:
            raise InputError("clip", f"has a text encoder '{key}' this package does not know.",
                             "Use the CLIP loaded with the model (its checkpoint's, or its text encoders' loader).")
    return widths


def require_matching_clip(model, clip) -> dict[str, int]:
    """The text encoders' widths; the features they give together must be as wide as the model takes (and
    FLUX.1's must be its own pair: SD3.5's CLIP gives 4096-wide features too, but another pooled vector)."""
    widths = text_encoder_widths(clip)
    family = host.models.model_family(model)
    flux_clip = host.models.has_flux_text_encoders(clip)
    if family in FLUX_FAMILIES and not flux_clip:
        raise InputError("clip", f"is not FLUX.1's text encoder pair (CLIP-L and T5-XXL), which the {family} model "
                         "reads.", "Load them with DualCLIPLoader: clip_l and t5xxl, type flux.")
    if flux_clip and family not in FLUX_FAMILIES:
        raise InputError("clip", f"is FLUX.1's text encoder pair, but the model is {family}.",
                         "Use the CLIP loaded with the model (its checkpoint's, or its text encoders' loader).")
    width, expected = host.models.text_feature_width(clip), host.models.text_context_width(model)
    if width != expected:
        raise InputError("clip", f"gives {width}-wide text features but the model expects {expected}.",
                         "Use the CLIP loaded from the same checkpoint as the model.")
    return widths
