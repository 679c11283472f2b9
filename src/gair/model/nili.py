"""NILI: Neural Implicit Local Interpolation of an RS token grid at a query point.

LIIF's local implicit function (Chen, Liu & Wang 2021) applied to the RS encoder's token
grid: 3 x 3 feature unfolding, then for each of the four cells around the query an
``imnet`` on [unfolded feature, relative coordinate], blended by the area of the
diagonally opposite sub-rectangle. Coordinates are (x, y) in [-1, 1], x west->east by
column, y north->south by row, pixel centres as ``grid_sample(align_corners=False)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from gair.model.config import OffsetScale, QueryMode

_EPS = 1e-6


def cell_centres(height: int, width: int, device=None, dtype=None) -> torch.Tensor:
    """(x, y) centres of an H x W grid in [-1, 1], shape [2, H, W] (align_corners=False)."""
    xs = (2 * torch.arange(width, device=device, dtype=dtype) + 1) / width - 1
    ys = (2 * torch.arange(height, device=device, dtype=dtype) + 1) / height - 1
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x, grid_y])


def make_imnet(in_dim: int, out_dim: int, hidden: Sequence[int] = ()) -> nn.Module:
    """A single linear layer (official GAIR) or an MLP with ReLUs (LIIF)."""
    layers: list[nn.Module] = []
    width = in_dim
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers) if len(layers) > 1 else layers[0]


class NILI(nn.Module):
    """Query a token grid [B, C, H, W] at coordinates [B, Q, 2] -> [B, Q, D].

    Args:
        in_dim: channels C of the token grid.
        out_dim: embedding size D (for ``bilinear``/``bicubic`` it must equal ``in_dim``).
        hidden: hidden sizes of ``imnet``; empty for the official single linear layer.
        mode: ``nili`` (the implicit function), or ``bilinear``/``bicubic`` sampling of the
            token grid (the ablations).
        feat_unfold: concatenate the 3 x 3 neighbourhood of each cell (C*9 channels).
        local_ensemble: blend the four surrounding cells (else the nearest cell only).
        offset_scale: how the offset from a cell centre to the query enters ``imnet``:
            ``grid`` multiplies the [-1, 1] offset by (W, H), as LIIF and the official GAIR
            code do (so an official ``imnet`` gives the official output); ``half_grid`` by
            (W/2, H/2), in cell units, as checkpoints of gair before contract version 2.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: Sequence[int] = (),
                 mode: QueryMode = "nili", feat_unfold: bool = True,
                 local_ensemble: bool = True, offset_scale: OffsetScale = "grid") -> None:
        super().__init__()
        if mode not in ("nili", "bilinear", "bicubic"):
            raise ValueError(f"unknown query mode {mode!r}")
        if mode != "nili" and out_dim != in_dim:
            raise ValueError(f"{mode} sampling keeps the token size: out_dim must be {in_dim}")
        if offset_scale not in ("grid", "half_grid"):
            raise ValueError(f"unknown offset scale {offset_scale!r}")
        self.mode, self.feat_unfold, self.local_ensemble = mode, feat_unfold, local_ensemble
        self.offset_scale = offset_scale
        self.in_dim, self.out_dim = in_dim, out_dim
        self.imnet = make_imnet(in_dim * (9 if feat_unfold else 1) + 2, out_dim, hidden) \
            if mode == "nili" else None

    def forward(self, feat: torch.Tensor, coord: torch.Tensor) -> torch.Tensor:
        if feat.ndim != 4 or coord.ndim != 3 or coord.shape[-1] != 2:
            raise ValueError(f"expected feat [B, C, H, W] and coord [B, Q, 2], got "
                             f"{tuple(feat.shape)} and {tuple(coord.shape)}")
        if self.mode != "nili":
            sampled = F.grid_sample(feat, coord.to(feat.dtype)[:, None], mode=self.mode,
                                    align_corners=False, padding_mode="border")
            return sampled[:, :, 0].permute(0, 2, 1)
        # Coordinates, cells, offsets and blending weights stay in float32 whatever the
        # autocast: in bf16 a query's coordinate moves by up to 1/256 (a third of a cell of
        # a 12 x 12 grid near the border), picking the wrong cell and offset.
        coord = coord.to(torch.promote_types(feat.dtype, torch.float32))
        batch, channels, height, width = feat.shape
        if self.feat_unfold:
            feat = F.unfold(feat, 3, padding=1).view(batch, channels * 9, height, width)
        cells = feat.flatten(2).transpose(1, 2)  # [B, H*W, C']
        rows = torch.arange(batch, device=feat.device)[:, None]
        half_x, half_y = 1.0 / width, 1.0 / height  # half a cell in [-1, 1] units
        scale = 1.0 if self.offset_scale == "grid" else 0.5
        shifts = [(sx, sy) for sx in (-1, 1) for sy in (-1, 1)] if self.local_ensemble else [(0, 0)]
        predictions, areas = [], []
        for sx, sy in shifts:
            shifted_x = (coord[..., 0] + sx * half_x + _EPS).clamp(-1 + _EPS, 1 - _EPS)
            shifted_y = (coord[..., 1] + sy * half_y + _EPS).clamp(-1 + _EPS, 1 - _EPS)
            # The cell holding the shifted point (grid_sample's nearest cell, exactly).
            col = ((shifted_x + 1) * (width / 2)).floor().long().clamp(0, width - 1)
            row = ((shifted_y + 1) * (height / 2)).floor().long().clamp(0, height - 1)
            q_feat = cells[rows, row * width + col]  # [B, Q, C']
            centre_x = (2 * col + 1).to(coord.dtype) / width - 1
            centre_y = (2 * row + 1).to(coord.dtype) / height - 1
            relative = torch.stack([(coord[..., 0] - centre_x) * width * scale,
                                    (coord[..., 1] - centre_y) * height * scale], -1)
            predictions.append(self.imnet(torch.cat([q_feat, relative.to(q_feat.dtype)], -1)))
            areas.append((relative[..., 0] * relative[..., 1]).abs() + 1e-9)
        if not self.local_ensemble:
            return predictions[0]
        # Each cell is weighted by the area of the diagonally opposite sub-rectangle.
        areas = [areas[3], areas[2], areas[1], areas[0]]
        total = sum(areas)
        blended = sum(p.to(a.dtype) * (a / total)[..., None] for p, a in zip(predictions, areas, strict=True))
        return blended.to(predictions[0].dtype)
