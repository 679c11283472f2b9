"""The GAIR model: RS, SV and location encoders aligned through NILI."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gair.model.config import GAIRConfig
from gair.model.encoders import SVEncoder, build_rs_encoder
from gair.model.location import LocationEncoder
from gair.model.nili import NILI


class GAIR(nn.Module):
    """Embeds RS patches, street views and locations into one space.

    ``forward(rs, sv, query, latlon)`` takes RS patches [B, bands, S, S], street views
    [B, 3, S', S'], the street views' query coordinates (x, y) in [-1, 1] inside their
    patches [B, 2], and their (lat, lon) in degrees [B, 2]; it returns L2-normalised
    embeddings ``sv``, ``rs_query`` (NILI at the query), ``rs_global`` and ``location``,
    and ``sv_pooled``, the SV encoder's output before projection (for distillation).
    """

    def __init__(self, config: GAIRConfig | None = None) -> None:
        super().__init__()
        self.config = config or GAIRConfig()
        cfg = self.config
        self.rs_encoder = build_rs_encoder(cfg.rs_encoder.model_dump())
        self.sv_encoder = SVEncoder(**cfg.sv_encoder.model_dump())
        self.location_encoder = LocationEncoder(embed_dim=cfg.embed_dim, **cfg.location_encoder)
        rs_dim = self.rs_encoder.embed_dim

        def to_embed(dim: int) -> nn.Module:
            return nn.Identity() if dim == cfg.embed_dim else nn.Linear(dim, cfg.embed_dim)

        if cfg.query_mode == "nili":  # imnet maps straight to embed_dim
            self.nili = NILI(rs_dim, cfg.embed_dim, cfg.imnet_hidden, mode="nili",
                             offset_scale=cfg.nili_offset_scale)
            self.rs_query_proj = nn.Identity()
        else:  # sampling ablations keep the token size, then project like the global RS
            self.nili = NILI(rs_dim, rs_dim, mode=cfg.query_mode)
            self.rs_query_proj = to_embed(rs_dim)
        # The official code projects the SV embedding only; the queried RS and the location
        # embedding enter the losses as they are. The global RS embedding (mean of tokens)
        # is in no loss, so it gets no parameters (DDP requires every parameter to be used).
        self.sv_proj = nn.Linear(self.sv_encoder.embed_dim, cfg.embed_dim)

    def encode_rs(self, rs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Token grid [B, C, h, w] and normalised global embedding [B, C] (mean of tokens)."""
        grid, pooled = self.rs_encoder(rs)
        return grid, F.normalize(pooled, dim=-1)

    def query_rs(self, grid: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """Normalised RS embedding at (x, y) in [-1, 1]: query [B, 2] -> [B, D], [B, Q, 2] -> [B, Q, D]."""
        single = query.ndim == 2
        out = F.normalize(self.rs_query_proj(self.nili(grid, query[:, None] if single else query)),
                          dim=-1)
        return out[:, 0] if single else out

    def encode_sv(self, sv: torch.Tensor, project: bool = True) -> torch.Tensor:
        """Normalised SV embedding: projected (``sv_proj``, the space the losses align with
        RS and locations), or the encoder's own output (``project=False``; the official
        inference code's ``pooler_output``)."""
        pooled = self.sv_encoder(sv)
        return F.normalize(self.sv_proj(pooled) if project else pooled, dim=-1)

    def encode_location(self, latlon: torch.Tensor) -> torch.Tensor:
        """Normalised location embedding of (lat, lon) in degrees [..., 2]."""
        return F.normalize(self.location_encoder(latlon), dim=-1)

    def forward(self, rs: torch.Tensor, sv: torch.Tensor, query: torch.Tensor,
                latlon: torch.Tensor) -> dict[str, torch.Tensor]:
        grid, rs_global = self.encode_rs(rs)
        sv_pooled = self.sv_encoder(sv)
        return {
            "sv": F.normalize(self.sv_proj(sv_pooled), dim=-1),
            "sv_pooled": sv_pooled,
            "rs_query": self.query_rs(grid, query),
            "rs_global": rs_global,
            "location": self.encode_location(latlon),
        }
