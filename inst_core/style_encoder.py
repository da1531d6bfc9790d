"""InST's style encoder: CLIP image embedding -> text-token embedding(s).

Parameter names follow the official `Attentions` module (attn1, attn2, net; to_q/to_k/to_v/to_out)
so released checkpoints load into it unchanged. With the paper's input, a single image embedding,
attention over a length-1 sequence has softmax 1: attn1, to_q and to_k get no gradient and the
module is an affine map of the embedding. That is kept as the faithful default; passing CLIP
vision patch tokens as `context` gives attn2 real keys and values.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CrossAttention(nn.Module):
    def __init__(self, query_dim: int, context_dim: int | None = None, heads: int = 8, dim_head: int = 64,
                 dropout: float = 0.0):
        super().__init__()
        inner = heads * dim_head
        context_dim = context_dim or query_dim
        self.heads = heads
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, query_dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        context = x if context is None else context
        q, k, v = (self._split_heads(t) for t in (self.to_q(x), self.to_k(context), self.to_v(context)))
        out = F.scaled_dot_product_attention(q, k, v)  # scale dim_head ** -0.5, as the official code
        b, h, n, d = out.shape
        return self.to_out(out.transpose(1, 2).reshape(b, n, h * d))

    def _split_heads(self, t: torch.Tensor) -> torch.Tensor:
        b, n, inner = t.shape
        return t.view(b, n, self.heads, inner // self.heads).transpose(1, 2)


class StyleEncoder(nn.Module):
    """One head per text encoder: `token_dim` is that encoder's token width (768 for SD1.x CLIP-L)."""

    def __init__(self, image_dim: int, token_dim: int, n_vectors: int = 1, heads: int = 8, dim_head: int = 64,
                 dropout: float = 0.05, context_dim: int | None = None):
        super().__init__()
        self.token_dim = token_dim
        self.n_vectors = n_vectors
        self.attn1 = CrossAttention(image_dim, heads=heads, dim_head=dim_head, dropout=dropout)
        self.attn2 = CrossAttention(image_dim, context_dim=context_dim, heads=heads, dim_head=dim_head,
                                    dropout=dropout)
        self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(image_dim, token_dim * n_vectors))

    def forward(self, image_embed: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """(B, image_dim) [+ context (B, N, context_dim)] -> (B, n_vectors, token_dim)."""
        x = image_embed[:, None, :]
        x = self.attn2(self.attn1(x), x if context is None else context)
        return self.net(x).view(image_embed.shape[0], self.n_vectors, self.token_dim)
