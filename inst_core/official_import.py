"""Import an official InST `embeddings.pt` without running arbitrary pickled code.

The official checkpoint pickles the whole `Attentions` module (classes
`ldm.modules.embedding_manager.Attentions` and `ldm.modules.attention.CrossAttention`). It is read
with torch's weights-only unpickler, allowing exactly those two names (mapped to inert stand-ins)
plus torch's Linear, Dropout and Sequential; any other global in the file is refused.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch
from torch import nn

from ..training_kit.errors import InputError
from .style import InSTStyle, StyleSpec
from .style_file import require_layout

OFFICIAL_TOKEN_DIM = 768  # the official code views the image embedding as (b, 1, 768)
OFFICIAL_FAMILY = "SD15"  # the official checkpoints are trained on SD1.4/1.5


class _OfficialAttentions(nn.Module):
    """Stand-in that only receives the unpickled state of ldm's Attentions."""


class _OfficialCrossAttention(nn.Module):
    """Stand-in that only receives the unpickled state of ldm's CrossAttention."""


_OfficialAttentions.__module__, _OfficialAttentions.__qualname__ = "ldm.modules.embedding_manager", "Attentions"
_OfficialAttentions.__name__ = "Attentions"
_OfficialCrossAttention.__module__, _OfficialCrossAttention.__qualname__ = "ldm.modules.attention", "CrossAttention"
_OfficialCrossAttention.__name__ = "CrossAttention"
UNSUPPORTED_GLOBAL = re.compile(r"unsupported (?:global: )?GLOBAL ([\w.]+)", re.IGNORECASE)
ALLOWED_GLOBALS = [_OfficialAttentions, _OfficialCrossAttention, nn.Linear, nn.Dropout, nn.Sequential]
# What torch's weights-only unpickler raises on a file that is no torch checkpoint (a text file named
# .pt fails with a KeyError on its first byte) or that refers to anything not allowed.
UNREADABLE = (pickle.UnpicklingError, RuntimeError, AttributeError, EOFError, KeyError, ValueError, TypeError,
              IndexError)
NOT_OFFICIAL = "Only the official InST checkpoint format can be imported."


def read_official_checkpoint(path: Path) -> dict:
    try:
        with torch.serialization.safe_globals(ALLOWED_GLOBALS):
            checkpoint = torch.load(str(path), map_location="cpu", weights_only=True)
    except UNREADABLE as e:
        # torch's own message goes on to suggest turning safe loading off; only what was refused is shown
        refused = UNSUPPORTED_GLOBAL.search(str(e))
        found = f"it refers to {refused.group(1)}" if refused else type(e).__name__
        raise InputError("official_file", f"'{path.name}' is not an official InST embeddings.pt, or holds "
                         f"something besides its attention module and tensors ({found}).",
                         NOT_OFFICIAL) from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("attention"), _OfficialAttentions):
        raise InputError("official_file", f"'{path.name}' has no InST 'attention' module.",
                         "Pick the embeddings.pt written by the official InST training.")
    return checkpoint


def import_official_style(path: Path) -> InSTStyle:
    """The official module's weights in this package's style encoder (SD1.x, one vector, image embed).
    The unpickled module is untrusted too: its sizes are checked as a style file's spec is, and its
    tensors against the encoder laid out on the meta device, before the encoder is built."""
    attention = read_official_checkpoint(path)["attention"]
    state = attention.state_dict()
    try:
        heads = int(getattr(attention.attn1, "heads", 8))
        dim_head = state["attn1.to_q.weight"].shape[0] // heads
        dropout = float(attention.net[0].p) if len(attention.net) > 1 else 0.0
    except (AttributeError, KeyError, TypeError, ValueError, IndexError, ZeroDivisionError):
        raise InputError("official_file", f"'{path.name}' has an attention module of another layout.",
                         NOT_OFFICIAL) from None
    spec = StyleSpec.checked(dict(family=OFFICIAL_FAMILY, token_widths={"l": OFFICIAL_TOKEN_DIM},
                                  image_dim=OFFICIAL_TOKEN_DIM, attention_heads=heads, dim_head=dim_head,
                                  dropout=dropout, training={"imported_from": path.name,
                                                             "source": "official InST embeddings.pt"}),
                             path.name, "official_file", NOT_OFFICIAL)
    with torch.device("meta"):
        expected = InSTStyle(spec).heads["l"].state_dict()
    require_layout(expected, state, f"'{path.name}' has an attention module of another shape", "official_file",
                   NOT_OFFICIAL)
    style = InSTStyle(spec)
    style.heads["l"].load_state_dict(state)
    return style
