"""A decoder-only transformer over token ids, with a key-value cache for incremental decoding.

Pre-norm blocks (causal self-attention through :func:`torch.nn.functional.scaled_dot_product_attention`,
then a GELU MLP), learned positional embeddings, and an output head tied to the token embedding.
Any tokenizer serves: the vocabulary size and the longest sequence are settings.

Decoding feeds one token per sequence per call (``forward(ids, cache)`` with ``ids`` of shape
``(batch, 1)``); the cache keeps each layer's keys and values, so a step costs one position's work
instead of the whole prefix's (``bench/token_speed.py`` measures both).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class TransformerConfig:
    vocab_size: int
    max_len: int = 512
    dim: int = 192
    layers: int = 4
    heads: int = 6
    mlp_ratio: int = 4
    #: Dropout on the attention weights, in training only.
    dropout: float = 0.0


@dataclass
class KVCache:
    """Per layer, keys and values (batch, heads, positions, head_dim) of the positions seen so far."""

    keys: list[torch.Tensor | None]
    values: list[torch.Tensor | None]

    @classmethod
    def empty(cls, layers: int) -> "KVCache":
        return cls([None] * layers, [None] * layers)

    @property
    def length(self) -> int:
        return 0 if self.keys[0] is None else int(self.keys[0].shape[2])


class _Block(nn.Module):
    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.heads = config.heads
        self.norm_attention = nn.LayerNorm(config.dim)
        self.qkv = nn.Linear(config.dim, 3 * config.dim)
        self.out = nn.Linear(config.dim, config.dim)
        self.norm_mlp = nn.LayerNorm(config.dim)
        self.mlp = nn.Sequential(nn.Linear(config.dim, config.mlp_ratio * config.dim), nn.GELU(),
                                 nn.Linear(config.mlp_ratio * config.dim, config.dim))
        self.dropout = config.dropout

    def forward(self, x: torch.Tensor, cache: KVCache | None, layer: int) -> torch.Tensor:
        batch, length, dim = x.shape
        q, k, v = self.qkv(self.norm_attention(x)).view(batch, length, 3, self.heads, dim // self.heads).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        causal = True
        if cache is not None:
            if cache.keys[layer] is not None:
                k = torch.cat([cache.keys[layer], k], dim=2)
                v = torch.cat([cache.values[layer], v], dim=2)
                causal = length > 1  # one new position may attend to every cached one
            cache.keys[layer], cache.values[layer] = k, v
        if causal and k.shape[2] != length:
            raise ValueError("a cached forward pass takes one new position at a time")
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=causal,
                                                  dropout_p=self.dropout if self.training else 0.0)
        x = x + self.out(attended.transpose(1, 2).reshape(batch, length, dim))
        return x + self.mlp(self.norm_mlp(x))


class DecoderTransformer(nn.Module):
    """``forward(ids, cache=None) -> logits`` of shape (batch, length, vocab_size)."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        if config.dim % config.heads:
            raise ValueError(f"model dim {config.dim} is not divisible by {config.heads} heads")
        self.config = config
        self.tokens = nn.Embedding(config.vocab_size, config.dim)
        self.positions = nn.Embedding(config.max_len, config.dim)
        self.blocks = nn.ModuleList(_Block(config) for _ in range(config.layers))
        self.norm = nn.LayerNorm(config.dim)
        nn.init.normal_(self.tokens.weight, std=0.02)
        nn.init.normal_(self.positions.weight, std=0.02)

    def new_cache(self) -> KVCache:
        return KVCache.empty(self.config.layers)

    def forward(self, ids: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        start = cache.length if cache is not None else 0
        if start + ids.shape[1] > self.config.max_len:
            raise ValueError(f"sequence of {start + ids.shape[1]} tokens is longer than the model's "
                             f"{self.config.max_len}")
        positions = torch.arange(start, start + ids.shape[1], device=ids.device)
        x = self.tokens(ids) + self.positions(positions)
        for layer, block in enumerate(self.blocks):
            x = block(x, cache, layer)
        return self.norm(x) @ self.tokens.weight.T


def masked_log_probs(logits: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Log-probabilities (batch, vocab) of the next token among the ``allowed`` ones (-inf elsewhere)."""
    return torch.log_softmax(logits.float().masked_fill(~allowed, float("-inf")), dim=-1)


def sample_next(logits: torch.Tensor, allowed: torch.Tensor | None, temperature: float, top_k: int | None,
                generator: torch.Generator | None) -> torch.Tensor:
    """One token per row of ``logits`` (batch, vocab): masked to ``allowed`` (bool, same shape), then top-k and temperature."""
    logits = logits.float() / temperature
    if allowed is not None:
        logits = logits.masked_fill(~allowed, float("-inf"))
    if top_k is not None and top_k < logits.shape[-1]:
        threshold = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < threshold, float("-inf"))
    return torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator).squeeze(-1)


__all__ = ["DecoderTransformer", "KVCache", "TransformerConfig", "masked_log_probs", "sample_next"]
