"""RS and SV encoders: timm Vision Transformers and the CROMA encoder, built without any
hub download; pretrained weights come from local files only."""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from gair.model.croma import CROMAEncoder
from gair.model.weights import (
    WeightsError,
    keep_fresh_if_reshaped,
    load_into,
    read_state_dict,
    subtree,
    tensors_of,
)

CROMA = "croma"
"""``rs_encoder.name`` that selects :class:`~gair.model.croma.CROMAEncoder` (GAIR's)."""

# Hugging Face ViT names -> timm names, for transformers 4.x and 5.x layouts.
_HF_TO_TIMM = [
    (r"embeddings\.cls_token", "cls_token"),
    (r"embeddings\.position_embeddings", "pos_embed"),
    (r"embeddings\.patch_embeddings\.projection\.", "patch_embed.proj."),
    (r"encoder\.layer\.(\d+)\.attention\.attention\.(query|key|value)\.", r"blocks.\1.attn.\2."),
    (r"layers\.(\d+)\.attention\.(q|k|v)_proj\.", r"blocks.\1.attn.\2."),
    (r"encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"blocks.\1.attn.proj."),
    (r"layers\.(\d+)\.attention\.o_proj\.", r"blocks.\1.attn.proj."),
    (r"encoder\.layer\.(\d+)\.intermediate\.dense\.", r"blocks.\1.mlp.fc1."),
    (r"encoder\.layer\.(\d+)\.output\.dense\.", r"blocks.\1.mlp.fc2."),
    (r"layers\.(\d+)\.mlp\.(fc1|fc2)\.", r"blocks.\1.mlp.\2."),
    (r"(?:encoder\.layer|layers)\.(\d+)\.layernorm_before\.", r"blocks.\1.norm1."),
    (r"(?:encoder\.layer|layers)\.(\d+)\.layernorm_after\.", r"blocks.\1.norm2."),
    (r"layernorm\.", "norm."),
    (r"pooler\.dense\.", "pooler."),
]
_QKV = {"query": 0, "key": 1, "value": 2, "q": 0, "k": 1, "v": 2}


def is_hf_vit(state: dict[str, torch.Tensor]) -> bool:
    return any(k.startswith("embeddings.patch_embeddings.") for k in state)


def hf_vit_to_timm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A Hugging Face ``ViTModel`` state dict (transformers 4.x or 5.x names, prefixes
    removed) as timm's ``VisionTransformer`` names it (+ ``pooler.*``); separate q, k, v
    are stacked into timm's ``qkv``."""
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], dict[int, torch.Tensor]] = {}
    for hf_key, value in state.items():
        for pattern, replacement in _HF_TO_TIMM:
            if re.match(pattern, hf_key):
                key = re.sub(f"^{pattern}", replacement, hf_key)
                break
        else:
            out[hf_key] = value  # unknown: reported by the loader as unexpected
            continue
        match = re.fullmatch(r"blocks\.(\d+)\.attn\.(query|key|value|q|k|v)\.(weight|bias)", key)
        if match:
            block, part, kind = match.groups()
            qkv.setdefault((block, kind), {})[_QKV[part]] = value
        else:
            out[key] = value
    for (block, kind), parts in qkv.items():
        if sorted(parts) != [0, 1, 2]:
            raise WeightsError(f"block {block}: query/key/value {kind} incomplete")
        out[f"blocks.{block}.attn.qkv.{kind}"] = torch.cat([parts[i] for i in range(3)])
    return out


def vit_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A ViT's weights from a local file in timm's or Hugging Face's layout, in timm's
    names; a ``vit.`` (``ViTForImageClassification``) or ``sv_encoder.`` (GAIR) prefix
    selects that part of the file."""
    state = subtree(tensors_of(read_state_dict(path), path), "vit.", "sv_encoder.")
    return hf_vit_to_timm(state) if is_hf_vit(state) else state


def create_vit(name: str, img_size: int, in_chans: int, **kwargs: Any) -> nn.Module:
    """A timm ViT with random weights (``pretrained=False``); ``kwargs`` override the
    architecture (``patch_size``, ``depth``, ``attn_drop_rate`` ...)."""
    return timm.create_model(name, pretrained=False, num_classes=0, img_size=img_size,
                             in_chans=in_chans, **kwargs)


HEAD_PREFIXES = ("head.", "fc_norm.", "pre_logits.", "classifier.")
"""Classifier parts of ViT files, which an encoder does not use."""


class RSEncoder(nn.Module):
    """Sentinel-2 patch [B, bands, S, S] -> token grid [B, C, S/p, S/p] and the mean token,
    with a timm ViT (class token and learned positions; the tokens exclude the class token)."""

    def __init__(self, name: str = "vit_base_patch16_224", img_size: int = 96, in_chans: int = 10,
                 patch_size: int = 8, weights: str | None = None, **kwargs: Any) -> None:
        super().__init__()
        self.vit = create_vit(name, img_size, in_chans, patch_size=patch_size, **kwargs)
        self.grid_size = img_size // patch_size
        self.embed_dim = self.vit.num_features
        if weights:
            self.load_weights(weights)

    def load_weights(self, path: str | Path) -> list[str]:
        """A ViT file (timm or Hugging Face layout); the patch projection (weight and
        bias) keeps its fresh initialisation when the file has another band count.
        Returns the keys that kept their fresh initialisation."""
        state, fresh = keep_fresh_if_reshaped(vit_state_dict(path), self.vit.patch_embed.proj,
                                              "patch_embed.proj.", path)
        load_into(self.vit, state, path, ignore=lambda key: key.startswith(HEAD_PREFIXES))
        return [f"vit.{k}" for k in fresh]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.vit.forward_features(x)[:, self.vit.num_prefix_tokens :]
        batch, _, channels = tokens.shape
        grid = tokens.transpose(1, 2).reshape(batch, channels, self.grid_size, self.grid_size)
        return grid, tokens.mean(dim=1)


def build_rs_encoder(config: dict[str, Any]) -> nn.Module:
    """The RS encoder a model configuration names: ``croma`` or a timm ViT name."""
    options = dict(config)
    if options.get("name") == CROMA:
        options.pop("name")
        return CROMAEncoder(**options)
    return RSEncoder(**options)


class SVEncoder(nn.Module):
    """Street view [B, 3, S, S] -> embedding [B, C]: the final-norm class token of a timm
    ViT, or with ``pooler=True`` Hugging Face's ``pooler_output`` (tanh(Linear) of it),
    as the official GAIR code embeds street views.

    ``weights``: a local ViT file in timm's or Hugging Face's layout (an ImageNet-21k
    ViT-B/16, say); classifier heads in the file are ignored, every other key must fit.
    ``layer_norm_eps``: 1e-12 in Hugging Face's ViT, 1e-6 in timm's.
    """

    def __init__(self, name: str = "vit_base_patch16_224", img_size: int = 224,
                 weights: str | None = None, pooler: bool = False,
                 layer_norm_eps: float | None = None, **kwargs: Any) -> None:
        super().__init__()
        if layer_norm_eps is not None:
            kwargs["norm_layer"] = partial(nn.LayerNorm, eps=layer_norm_eps)
        self.vit = create_vit(name, img_size, 3, global_pool="token", **kwargs)
        self.embed_dim = self.vit.num_features
        self.pooler = nn.Linear(self.embed_dim, self.embed_dim) if pooler else None
        if weights:
            self.load_vit(weights)

    @staticmethod
    def from_timm_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A ViT state dict in timm's names (+ ``pooler.*``) as this module names it."""
        return {k if k.startswith("pooler.") else f"vit.{k}": v for k, v in state.items()}

    def load_vit(self, path: str | Path) -> None:
        """A ViT file; classifier heads (and a pooler, where this encoder has none) are
        ignored, every other key must fit."""
        unused = tuple(f"vit.{p}" for p in HEAD_PREFIXES) + (
            ("pooler.",) if self.pooler is None else ())
        load_into(self, self.from_timm_names(vit_state_dict(path)), path,
                  ignore=lambda key: key.startswith(unused))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cls = self.vit(x)
        return torch.tanh(self.pooler(cls)) if self.pooler is not None else cls
