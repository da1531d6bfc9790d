"""Text: ComfyUI's tokenizer output (per encoder key, chunks of (token, weight) pairs) and its encoding,
stock and with gradients."""

from __future__ import annotations

import torch


def tokenize(clip, text: str) -> dict:
    return clip.tokenize(text)


def token_ids(clip, key: str, text: str) -> list[int]:
    """The tokenizer's ids for `text` alone, without start, end and padding tokens."""
    tokenizer = getattr(clip.tokenizer, f"clip_{key}")
    special = {tokenizer.start_token, tokenizer.end_token, tokenizer.pad_token}
    return [t for t, _ in clip.tokenize(text)[key][0] if isinstance(t, int) and t not in special]


def token_slots(tokens: dict, key: str, token_id: int) -> list[tuple[int, int]]:
    """(chunk, position) of every `token_id` in text encoder `key`'s part of a tokenizer output."""
    return [(c, i) for c, chunk in enumerate(tokens[key]) for i, token in enumerate(chunk) if token[0] == token_id]


def with_token_embeddings(tokens: dict, slots: dict[str, list[tuple[int, int]]],
                          embeddings: dict[str, list[torch.Tensor]]) -> dict:
    """A copy of a tokenizer output whose token at each slot is an embedding vector instead (where a
    textual-inversion `embedding:NAME` puts its vectors); each slot keeps its weight."""
    out = {}
    for key, chunks in tokens.items():
        filled = [list(chunk) for chunk in chunks]
        for (c, i), vector in zip(slots.get(key, []), embeddings.get(key, [])):
            filled[c][i] = (vector, *filled[c][i][1:])
        out[key] = filled
    return out


def conditioning_widths(conditioning: list) -> list[tuple[int, int | None]]:
    """(text features' width, pooled vector's width or None) of each entry of a CONDITIONING."""
    def pooled_width(extra: dict) -> int | None:
        pooled = extra.get("pooled_output")
        return None if pooled is None else int(pooled.shape[-1])

    return [(int(cond.shape[-1]), pooled_width(extra)) for cond, extra in conditioning]


def encode_tokens(clip, tokens: dict) -> list:
    """CONDITIONING exactly as stock CLIPTextEncode makes it (tensor embeddings in `tokens` included)."""
    return clip.encode_from_tokens_scheduled(tokens)


def encode_tokens_frozen(clip, tokens: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The text features and pooled output stock CLIP Text Encode computes (ComfyUI loads the text
    encoder as it needs), copied to ordinary tensors that can enter autograd as constants."""
    cond, pooled = clip.encode_from_tokens(tokens, return_pooled=True)
    with torch.inference_mode(False):
        return cond.clone(), None if pooled is None else pooled.clone()


def encode_tokens_for_training(clip, tokens: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(cross-attention features, pooled) with gradient flowing back into tensor embeddings: what
    `CLIP.encode_from_tokens` computes, without its model-management load on every call. Inside
    `training_context` the text encoder is already loaded in full (`load_for_training`); a load per step
    would ask ComfyUI to free memory for it each time (on a small card, by offloading part of the UNet
    mid-run)."""
    encoder = clip.cond_stage_model
    encoder.reset_clip_options()
    if clip.layer_idx is not None:
        encoder.set_clip_options({"layer": clip.layer_idx})
    cond, pooled = encoder.encode_token_weights(tokens)[:2]
    return cond, pooled
