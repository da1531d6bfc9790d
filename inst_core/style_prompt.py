"""A prompt with a placeholder (`*`) whose token is replaced by the style's vectors.

The replacement happens in ComfyUI's token lists, before position embeddings, the same place a
textual-inversion `embedding:NAME` goes, so the conditioner and an exported embedding agree.
With n vectors per token the placeholder is repeated n times before tokenizing, so long prompts
are chunked exactly as they would be with the embedding.

The token goes into every loaded CLIP text encoder (SDXL's and SD3.5's CLIP-L and CLIP-G). A T5
encoder (SD3.5's optional third) is refused: an exported embedding, which stock prompts load, holds
CLIP vectors only, so the conditioner and the embedding could not agree on T5's part.

FLUX.1 is not taken: its DiT reads the prompt's tokens from T5-XXL alone (CLIP-L gives only a pooled
vector), so the token would have to live in T5's input space, which the method was neither defined
nor evaluated in, and which stock Flux prompts load no embedding into from an InST export.
"""

from __future__ import annotations

import torch

from .. import host
from ..training_kit.errors import InputError
from ..training_kit.model_checks import STABLE_DIFFUSION, Families

INST_FAMILIES = Families(STABLE_DIFFUSION.names, f"{STABLE_DIFFUSION.described} (not FLUX.1: its DiT reads the "
                         "prompt's tokens from T5-XXL alone, and InST's style token lives in CLIP text encoders)")

CLIP_TEXT_ENCODERS = ("l", "g", "h")  # ComfyUI's tokenizer keys of CLIP-L, CLIP-G (OpenCLIP bigG), CLIP-H


def require_clip_text_encoders(clip) -> list[str]:
    """The tokenizer keys of the CLIP's text encoders, which must all be CLIP ones (no T5)."""
    if host.models.has_flux_text_encoders(clip):
        raise InputError("clip", "is FLUX.1's text encoder pair; an InST style token lives in CLIP text encoders, and "
                         "FLUX.1 reads the prompt's tokens from T5-XXL alone.",
                         "Use InST with an SD1.x, SD2.x, SDXL or SD3.5 model and its CLIP.")
    keys = list(host.models.text_encoder_widths(clip))
    others = [key for key in keys if key not in CLIP_TEXT_ENCODERS]
    if others:
        raise InputError("clip", f"has a text encoder besides CLIP loaded ({', '.join(others)}); an InST style "
                         "token lives in the CLIP text encoders only (an exported embedding holds no T5 vectors).",
                         "For SD3.5, load its CLIP-L and CLIP-G without T5-XXL (DualCLIPLoader with clip_l, clip_g "
                         "and type sd3, or a checkpoint without T5).")
    return keys


class StylePrompt:
    def __init__(self, clip, text: str, placeholder: str, n_vectors: int):
        placeholder = placeholder.strip()
        if not placeholder:
            raise InputError("placeholder", "is empty.", "Use a single-token placeholder such as '*'.")
        if placeholder not in text:
            raise InputError("text", f"has no '{placeholder}', so there is nowhere to put the style.",
                             f"Write '{placeholder}' where the style goes, e.g. 'a portrait in the style of "
                             f"{placeholder}'.")
        self.tokens_template = host.text.tokenize(clip, text.replace(placeholder, " ".join([placeholder] * n_vectors)))
        self.slots: dict[str, list[tuple[int, int]]] = {}
        for key in require_clip_text_encoders(clip):
            ids = host.text.token_ids(clip, key, placeholder)
            if len(ids) != 1:
                raise InputError("placeholder", f"'{placeholder}' is {len(ids)} tokens for text encoder '{key}'.",
                                 "Use a placeholder the tokenizer keeps whole, such as '*'.")
            self.slots[key] = host.text.token_slots(self.tokens_template, key, ids[0])
            if len(self.slots[key]) % n_vectors or not self.slots[key]:
                raise InputError("text", f"'{placeholder}' is glued to other characters, so the tokenizer "
                                 "does not see it alone.", f"Put spaces around '{placeholder}'.")
        self.n_vectors = n_vectors

    def tokens(self, vectors: dict[str, torch.Tensor]) -> dict:
        """Token lists with the placeholders replaced by rows of `vectors[key]` ((n_vectors, width))."""
        embeddings = {key: [vectors[key][n % self.n_vectors] for n in range(len(slots))]
                      for key, slots in self.slots.items()}
        return host.text.with_token_embeddings(self.tokens_template, self.slots, embeddings)
