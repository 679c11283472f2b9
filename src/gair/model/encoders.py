"""RS and SV encoders: timm Vision Transformers built without any hub download."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn


def create_vit(name: str, img_size: int, in_chans: int, weights: str | None = None,
               **kwargs: Any) -> nn.Module:
    """A timm ViT with random weights (``pretrained=False``), or weights from a local file.

    ``kwargs`` override the architecture (``patch_size``, ``depth``, ``embed_dim`` ...).
    A local ``weights`` file (state dict, ``.pth``/``.safetensors``) is loaded non-strictly
    so heads and a re-shaped patch embedding may differ; what was skipped is logged by timm.
    """
    model = timm.create_model(name, pretrained=False, num_classes=0, img_size=img_size,
                              in_chans=in_chans, **kwargs)
    if weights:
        timm.models.load_checkpoint(model, str(Path(weights)), strict=False)
    return model


class RSEncoder(nn.Module):
    """Sentinel-2 patch [B, bands, S, S] -> token grid [B, C, S/p, S/p] and global embedding."""

    def __init__(self, name: str = "vit_base_patch16_224", img_size: int = 96, in_chans: int = 10,
                 patch_size: int = 8, weights: str | None = None, **kwargs: Any) -> None:
        super().__init__()
        self.vit = create_vit(name, img_size, in_chans, weights, patch_size=patch_size, **kwargs)
        self.grid_size = img_size // patch_size
        self.embed_dim = self.vit.num_features

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.vit.forward_features(x)[:, self.vit.num_prefix_tokens :]
        batch, _, channels = tokens.shape
        grid = tokens.transpose(1, 2).reshape(batch, channels, self.grid_size, self.grid_size)
        return grid, tokens.mean(dim=1)


class SVEncoder(nn.Module):
    """Street view [B, 3, S, S] -> class-token embedding [B, C]."""

    def __init__(self, name: str = "vit_base_patch16_224", img_size: int = 224,
                 weights: str | None = None, **kwargs: Any) -> None:
        super().__init__()
        self.vit = create_vit(name, img_size, 3, weights, global_pool="token", **kwargs)
        self.embed_dim = self.vit.num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vit(x)
