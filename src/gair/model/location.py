"""Location encoder: Equal Earth projection and random Fourier features (GeoCLIP design).

Coordinates are (lat, lon) in degrees everywhere in this module's inputs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from gair.model.weights import load_into, read_state_dict, subtree, tensors_of

# Equal Earth projection constants (Šavrič, Patterson & Jenny 2018), as GeoCLIP uses them.
_A1, _A2, _A3, _A4 = 1.340264, -0.081106, 0.000893, 0.003796
_SCALE = 66.50336


def equal_earth_projection(latlon: torch.Tensor) -> torch.Tensor:
    """Project (lat, lon) in degrees, shape [..., 2], to Equal Earth (x, y) scaled as GeoCLIP.

    (0, 0) -> (0, 0); (0, 180) -> (1, 0); (+-90, 0) -> (0, +-0.486717).
    """
    if latlon.shape[-1] != 2:
        raise ValueError(f"expected (lat, lon) pairs in the last dimension, got {tuple(latlon.shape)}")
    lat = torch.deg2rad(latlon[..., 0])
    lon = torch.deg2rad(latlon[..., 1])
    theta = torch.asin(math.sqrt(3.0) / 2.0 * torch.sin(lat))
    t2 = theta * theta
    t6 = t2 * t2 * t2
    x = (2.0 * math.sqrt(3.0) * lon * torch.cos(theta)) / (
        3.0 * (9.0 * _A4 * t6 * t2 + 7.0 * _A3 * t6 + 3.0 * _A2 * t2 + _A1)
    )
    y = _A4 * t6 * t2 * theta + _A3 * t6 * theta + _A2 * t2 * theta + _A1 * theta
    return torch.stack([x, y], dim=-1) * (_SCALE / 180.0)


class GaussianFourierFeatures(nn.Module):
    """[cos 2πvBᵀ, sin 2πvBᵀ] with a fixed Gaussian B ~ N(0, σ²) kept in the state dict."""

    def __init__(self, in_dim: int, n_features: int, sigma: float, generator: torch.Generator):
        super().__init__()
        b = torch.randn(n_features, in_dim, generator=generator) * sigma
        self.register_buffer("b", b)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        # A sum of products, not a matmul: a GPU may run float32 matmuls in TF32 (10
        # mantissa bits), which would move arguments of thousands of radians by whole turns.
        projected = 2.0 * math.pi * (v[..., None, :] * self.b.to(v.dtype)).sum(-1)
        return torch.cat([torch.cos(projected), torch.sin(projected)], dim=-1)


class LocationEncoder(nn.Module):
    """Equal Earth (x, y) -> one RFF branch per σ -> MLP each -> summed embedding."""

    def __init__(self, embed_dim: int = 768, sigmas: Sequence[float] = (2**0, 2**4, 2**8),
                 n_features: int = 256, hidden_dim: int = 1024, depth: int = 3, seed: int = 0,
                 weights: str | None = None):
        super().__init__()
        self.head_index = 1 + 2 * depth  # after the RFF and depth x (Linear, ReLU)
        generator = torch.Generator().manual_seed(seed)
        self.branches = nn.ModuleList()
        for sigma in sigmas:
            layers: list[nn.Module] = [GaussianFourierFeatures(2, n_features, sigma, generator)]
            width = 2 * n_features
            for _ in range(depth):
                layers += [nn.Linear(width, hidden_dim), nn.ReLU()]
                width = hidden_dim
            layers.append(nn.Linear(width, embed_dim))
            self.branches.append(nn.Sequential(*layers))

        if weights:
            self.load_geoclip(weights)

    def from_geoclip_names(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """GeoCLIP's names (``LocEnc{i}.capsule.{k}``, ``LocEnc{i}.head.0``) as this
        module's (``branches.{i}.{k}``, ``branches.{i}.<last>``); others unchanged."""
        head = self.head_index

        def rename(key: str) -> str:
            key = re.sub(r"^LocEnc(\d+)\.capsule\.", r"branches.\1.", key)
            return re.sub(r"^LocEnc(\d+)\.head\.0\.", rf"branches.\1.{head}.", key)

        return {rename(k): v for k, v in state.items()}

    def load_geoclip(self, path: str | Path) -> None:
        """Initialise from GeoCLIP's released location encoder (or the location encoder of
        a GAIR checkpoint). Heads of another width (GeoCLIP's 512 where GAIR has 768) keep
        their fresh initialisation, as GAIR's own GeoCLIP start did."""
        state = subtree(tensors_of(read_state_dict(path), path), "location_encoder.")
        load_into(self, self.from_geoclip_names(state), path,
                  reinit={f"branches.{i}.{self.head_index}.{kind}"
                          for i in range(len(self.branches)) for kind in ("weight", "bias")})

    def forward(self, latlon: torch.Tensor) -> torch.Tensor:
        """Embed (lat, lon) in degrees, shape [..., 2], to [..., embed_dim], in float32
        whatever the autocast: under bf16 (8 mantissa bits) the Fourier arguments of
        points a kilometre apart round to the same value, and the encoder is a small share
        of a step's cost."""
        with torch.autocast(latlon.device.type, enabled=False):
            xy = equal_earth_projection(latlon.float())
            return sum(branch(xy) for branch in self.branches)
