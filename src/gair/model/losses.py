"""GAIR's contrastive losses: INCL (SV <-> queried RS) and SECL (SV/RS -> location).

Embeddings are L2-normalised by the caller. Under DDP, in-batch negatives are gathered
from every rank *with* gradients, so N ranks x batch b give the loss (and, after DDP's
gradient averaging, the gradients) of one rank x batch N*b.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

MAX_LOGIT_SCALE = math.log(100.0)  # as CLIP: temperatures never drop below 0.01


_GATHER_GROUPS: dict[int, object] = {}


def _gather_group():
    """A process group of its own for the losses' gathers.

    The backward of a gather with gradients runs collectives while DDP's reducer
    all-reduces gradient buckets; on one shared group the two can interleave differently
    on different ranks and silently mix tensors. A separate group keeps them apart.
    """
    key = id(dist.group.WORLD)
    if key not in _GATHER_GROUPS:
        _GATHER_GROUPS[key] = dist.new_group(backend=dist.get_backend())
    return _GATHER_GROUPS[key]


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` from all ranks, rank order, keeping the autograd graph."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(tensor, group=_gather_group()), dim=0)


def gather_no_grad(tensor: torch.Tensor) -> torch.Tensor:
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)


def symmetric_infonce(a: torch.Tensor, b: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """CLIP loss: ½[CE(s·a bᵀ, I) + CE(s·b aᵀ, I)] over the (gathered) batch."""
    a, b = gather_with_grad(a), gather_with_grad(b)
    logits = logit_scale.exp() * a @ b.T
    target = torch.arange(len(a), device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def location_infonce(query: torch.Tensor, locations: torch.Tensor, latlon: torch.Tensor,
                     queue_locations: torch.Tensor | None, queue_latlon: torch.Tensor | None,
                     logit_scale: torch.Tensor, same_place_deg: float = 1e-6) -> torch.Tensor:
    """InfoNCE from embeddings to location embeddings: the positive is the view's own
    location; negatives are the batch's other locations and the queue's.

    A negative at the same place as the positive (within ``same_place_deg``) is masked out:
    a location must not be its own negative.
    """
    query, locations, latlon = (gather_with_grad(query), gather_with_grad(locations),
                                gather_no_grad(latlon))
    keys, key_latlon = locations, latlon
    if queue_locations is not None and len(queue_locations):
        keys = torch.cat([locations, queue_locations])
        key_latlon = torch.cat([latlon, queue_latlon])
    logits = logit_scale.exp() * query @ keys.T
    same = (latlon[:, None, :] - key_latlon[None, :, :]).abs().amax(-1) <= same_place_deg
    own = torch.zeros_like(same)
    own[:, : len(query)] = torch.eye(len(query), dtype=torch.bool, device=query.device)
    logits = logits.masked_fill(same & ~own, float("-inf"))
    return F.cross_entropy(logits, torch.arange(len(query), device=query.device))


@dataclass(frozen=True)
class LossConfig:
    """Temperatures and weights (defaults of the official code: τ = 0.07, 1 / 0.5 / 0.5)."""

    temperature: float = 0.07
    learnable_temperature: bool = False
    shared_temperature: bool = True  # one τ for all terms, else one per term
    weight_incl: float = 1.0
    weight_secl_sv: float = 0.5
    weight_secl_rs: float = 0.5
    queue_size: int = 4096


class LocationQueue(nn.Module):
    """The most recent ``size`` training coordinates (lat, lon), re-encoded every step."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size
        self.register_buffer("latlon", torch.zeros(size, 2))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))

    def filled(self) -> torch.Tensor:
        return self.latlon[: int(min(self.count.item(), self.size))]

    @torch.no_grad()
    def push(self, latlon: torch.Tensor) -> None:
        latlon = gather_no_grad(latlon.float())[-self.size :]
        start = int(self.pointer.item())
        index = (start + torch.arange(len(latlon), device=latlon.device)) % self.size
        self.latlon[index] = latlon
        self.pointer.fill_((start + len(latlon)) % self.size)
        self.count.add_(len(latlon))


class GAIRLoss(nn.Module):
    """weight_incl·INCL + weight_secl_sv·SECL(SV→loc) + weight_secl_rs·SECL(RS→loc)."""

    TERMS = ("incl", "secl_sv", "secl_rs")

    def __init__(self, config: LossConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or LossConfig()
        n = 1 if cfg.shared_temperature else len(self.TERMS)
        init = torch.full((n,), math.log(1.0 / cfg.temperature))
        self.logit_scale = nn.Parameter(init, requires_grad=cfg.learnable_temperature)
        self.queue = LocationQueue(cfg.queue_size) if cfg.queue_size > 0 else None

    def scale(self, term: str) -> torch.Tensor:
        index = 0 if self.config.shared_temperature else self.TERMS.index(term)
        return self.logit_scale[index].clamp(max=MAX_LOGIT_SCALE)

    def forward(self, embeddings: dict[str, torch.Tensor], latlon: torch.Tensor,
                location_encoder: nn.Module | None = None) -> dict[str, torch.Tensor]:
        """Loss terms and their weighted sum ``loss``; updates the queue when training."""
        cfg = self.config
        queue_latlon = queue_emb = None
        if self.queue is not None and location_encoder is not None:
            queue_latlon = self.queue.filled().to(latlon)
            if len(queue_latlon):
                queue_emb = F.normalize(location_encoder(queue_latlon), dim=-1)
        terms = {
            "incl": symmetric_infonce(embeddings["sv"], embeddings["rs_query"], self.scale("incl")),
            "secl_sv": location_infonce(embeddings["sv"], embeddings["location"], latlon,
                                        queue_emb, queue_latlon, self.scale("secl_sv")),
            "secl_rs": location_infonce(embeddings["rs_query"], embeddings["location"], latlon,
                                        queue_emb, queue_latlon, self.scale("secl_rs")),
        }
        terms["loss"] = (cfg.weight_incl * terms["incl"] + cfg.weight_secl_sv * terms["secl_sv"]
                         + cfg.weight_secl_rs * terms["secl_rs"])
        if self.training and self.queue is not None:
            self.queue.push(latlon.detach())
        return terms
