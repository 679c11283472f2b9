"""The CROMA optical encoder (Fuller, Millard & Green 2023), GAIR's RS encoder.

A ViT without a class token and without position embeddings: each 8 x 8 patch of all
bands, flattened channel-major, goes through one linear layer, and position enters every
attention layer as a 2D-ALiBi bias, ``-slope_h x`` the euclidean distance between the two
patches on the token grid. Pre-norm blocks, qkv without bias; CROMA's final LayerNorm
(``transformer.norm_out``) is optional: GAIR's training code applied it, its released
inference code does not. Module names follow the released files (``linear_input``,
``transformer.layers.{i}.{0,1}``) so CROMA's and GAIR's weights load by renaming a prefix.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from gair.model.weights import (
    WeightsError,
    keep_fresh_if_reshaped,
    load_into,
    read_state_dict,
    subtree,
    tensors_of,
)


def alibi_slopes(num_heads: int) -> list[float]:
    """ALiBi's geometric slopes (Press et al. 2022): for 2^k heads, start = ratio =
    2^(-8 / 2^k); otherwise the nearest lower power of two, then every other slope of
    the next power of two."""
    def power_of_two(n: int) -> list[float]:
        start = 2.0 ** (-(2.0 ** -(math.log2(n) - 3)))
        return [start * start**i for i in range(n)]

    if math.log2(num_heads).is_integer():
        return power_of_two(num_heads)
    lower = 2 ** math.floor(math.log2(num_heads))
    return power_of_two(lower) + alibi_slopes(2 * lower)[0::2][: num_heads - lower]


def alibi_2d(num_heads: int, grid_height: int, grid_width: int) -> torch.Tensor:
    """Attention bias [heads, N, N] over an H x W token grid (tokens row-major):
    ``-slope_h * sqrt((row_i - row_j)^2 + (col_i - col_j)^2)``."""
    rows, cols = torch.meshgrid(torch.arange(grid_height), torch.arange(grid_width),
                                indexing="ij")
    points = torch.stack([rows.flatten(), cols.flatten()], dim=-1).double()
    distance = torch.cdist(points, points)
    slopes = torch.tensor(alibi_slopes(num_heads), dtype=torch.float64)
    return (-slopes[:, None, None] * distance).float()


class Attention(nn.Module):
    """Pre-norm multi-head self-attention with an additive position bias, qkv without bias."""

    def __init__(self, dim: int, num_heads: int, attn_drop: float = 0.0,
                 eps: float = 1e-5) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads, self.attn_drop = num_heads, attn_drop
        self.input_norm = nn.LayerNorm(dim, eps=eps)
        self.to_qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.to_out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        qkv = self.to_qkv(self.input_norm(x)).view(batch, tokens, 3, self.num_heads, -1)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each [B, heads, N, dim_head]
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias.to(q.dtype),
            dropout_p=self.attn_drop if self.training else 0.0)
        return self.to_out(out.transpose(1, 2).reshape(batch, tokens, dim))


class FeedForward(nn.Module):
    """Pre-norm GELU MLP; ``net`` indices as CROMA's (Linear, GELU, Dropout, Linear)."""

    def __init__(self, dim: int, mlp_ratio: float = 4.0, eps: float = 1e-5) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.input_norm = nn.LayerNorm(dim, eps=eps)
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(0.0),
                                 nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.input_norm(x))


class Transformer(nn.Module):
    def __init__(self, dim: int, depth: int, num_heads: int, mlp_ratio: float,
                 attn_drop: float, eps: float, final_norm: bool) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.ModuleList([Attention(dim, num_heads, attn_drop, eps),
                           FeedForward(dim, mlp_ratio, eps)]) for _ in range(depth))
        self.norm_out = nn.LayerNorm(dim, eps=eps) if final_norm else None

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        for attention, feed_forward in self.layers:
            x = x + attention(x, bias)
            x = x + feed_forward(x)
        return self.norm_out(x) if self.norm_out is not None else x


class CROMAEncoder(nn.Module):
    """Sentinel-2 patch [B, bands, S, S] -> token grid [B, C, S/p, S/p] and the mean token.

    CROMA-base is ``embed_dim=768, depth=12, num_heads=16, patch_size=8``; GAIR feeds it
    ``in_chans=10`` bands at ``img_size=96`` (12 x 12 tokens). ``weights`` is a local file:
    CROMA's released ``CROMA_base.pt`` (its ``s2_encoder``) or a state dict of this module;
    the patch projection is re-initialised when the band count differs (as GAIR did).
    """

    def __init__(self, img_size: int = 96, in_chans: int = 10, patch_size: int = 8,
                 embed_dim: int = 768, depth: int = 12, num_heads: int = 16,
                 mlp_ratio: float = 4.0, attn_drop: float = 0.0, layer_norm_eps: float = 1e-5,
                 final_norm: bool = False, weights: str | None = None) -> None:
        super().__init__()
        if img_size % patch_size:
            raise ValueError(f"img_size {img_size} is not a multiple of patch_size {patch_size}")
        self.patch_size, self.in_chans = patch_size, in_chans
        self.grid_size = img_size // patch_size
        self.embed_dim = embed_dim
        self.linear_input = nn.Linear(in_chans * patch_size * patch_size, embed_dim)
        self.transformer = Transformer(embed_dim, depth, num_heads, mlp_ratio, attn_drop,
                                       layer_norm_eps, final_norm)
        # Computed, not learned: kept out of the state dict.
        self.register_buffer("attn_bias", alibi_2d(num_heads, self.grid_size, self.grid_size),
                             persistent=False)
        if weights:
            self.load_weights(weights)

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] -> [B, (H/p)(W/p), C p p]: patches row-major, pixels channel-major."""
        batch, channels, height, width = x.shape
        p = self.patch_size
        x = x.reshape(batch, channels, height // p, p, width // p, p)
        return x.permute(0, 2, 4, 1, 3, 5).reshape(batch, (height // p) * (width // p), -1)

    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.in_chans or x.shape[-1] != self.grid_size * self.patch_size:
            raise ValueError(f"expected [B, {self.in_chans}, {self.grid_size * self.patch_size}, "
                             f"{self.grid_size * self.patch_size}], got {tuple(x.shape)}")
        return self.transformer(self.linear_input(self.patchify(x)), self.attn_bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.forward_tokens(x)
        batch, _, channels = tokens.shape
        grid = tokens.transpose(1, 2).reshape(batch, channels, self.grid_size, self.grid_size)
        return grid, tokens.mean(dim=1)

    def load_weights(self, path: str | Path) -> list[str]:
        """Initialise from CROMA's released file (``{"s2_encoder": ...}``), GAIR's
        (``rs_encoder.s2_encoder.*``) or this module's own state dict. A final norm in the
        file is ignored (and logged) when this encoder has none. Returns the keys that
        kept their fresh initialisation."""
        content = read_state_dict(path)
        if isinstance(content.get("s2_encoder"), dict):
            state = tensors_of(content["s2_encoder"], path)
        else:
            state = subtree(tensors_of(content, path), "rs_encoder.s2_encoder.", "s2_encoder.")
        if not any(k.startswith("transformer.layers.") for k in state):
            raise WeightsError(f"{path}: not a CROMA optical encoder (no transformer.layers.* "
                               f"keys; first keys: {', '.join(list(state)[:5])})")
        # Another band count (CROMA has 12, GAIR 10): a fresh projection, as GAIR did.
        state, fresh = keep_fresh_if_reshaped(state, self.linear_input, "linear_input.", path)
        load_into(self, state, path, ignore=lambda key: key.startswith("transformer.norm_out."))
        return fresh
