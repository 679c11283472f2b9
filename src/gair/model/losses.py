"""GAIR's contrastive losses: INCL (SV <-> queried RS) and SECL (SV/RS -> location).

Embeddings are L2-normalised by the caller. Under DDP, in-batch negatives are gathered
from every rank *with* gradients, so N ranks x batch b give the loss (and, after DDP's
gradient averaging, the gradients) of one rank x batch N*b.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from gair.model.config import LossConfig

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


ROW_CHUNK = 4096
"""Query rows scored at a time: the full [N, N] score matrix of a 50,000-view validation
split would take 10 GB; training batches fit in one chunk."""


def _cross_entropy_by_rows(query: torch.Tensor, keys: torch.Tensor, logit_scale: torch.Tensor,
                           targets: torch.Tensor, excluded=None,
                           chunk: int = ROW_CHUNK) -> torch.Tensor:
    """Mean CE of ``exp(logit_scale) * query @ keys.T`` against ``targets``, ``chunk``
    query rows at a time; ``excluded(start, stop)`` gives a [rows, keys] mask of logits
    that are not candidates (set to -inf). In float32 whatever the autocast: in bf16
    (8 mantissa bits) cosines 0.004 apart round together, x 1/τ = 14 in the logits."""
    with torch.autocast(query.device.type, enabled=False):
        query, keys, scale = query.float(), keys.float(), logit_scale.float().exp()
        total = query.new_zeros(())
        for start in range(0, len(query), chunk):
            stop = min(start + chunk, len(query))
            logits = scale * query[start:stop] @ keys.T
            if excluded is not None:
                logits = logits.masked_fill(excluded(start, stop), float("-inf"))
            total = total + F.cross_entropy(logits, targets[start:stop], reduction="sum")
        return total / len(query)


def symmetric_infonce(a: torch.Tensor, b: torch.Tensor, logit_scale: torch.Tensor,
                      chunk: int = ROW_CHUNK) -> torch.Tensor:
    """CLIP loss: ½[CE(s·a bᵀ, I) + CE(s·b aᵀ, I)] over the (gathered) batch."""
    a, b = gather_with_grad(a), gather_with_grad(b)
    target = torch.arange(len(a), device=a.device)
    return 0.5 * (_cross_entropy_by_rows(a, b, logit_scale, target, chunk=chunk)
                  + _cross_entropy_by_rows(b, a, logit_scale, target, chunk=chunk))


def queue_infonce(query: torch.Tensor, locations: torch.Tensor, queue_locations: torch.Tensor,
                  logit_scale: torch.Tensor) -> torch.Tensor:
    """The official SECL: CE over [own location, queued locations] with the own location
    as the positive; no other item of the batch is a negative and nothing is masked
    (MoCo / GeoCLIP style, per device: nothing is gathered). Logits in float32."""
    with torch.autocast(query.device.type, enabled=False):
        query, locations = query.float(), locations.float()
        positive = (query * locations).sum(-1, keepdim=True)
        logits = logit_scale.float().exp() * torch.cat(
            [positive, query @ queue_locations.float().T], dim=1)
        return F.cross_entropy(logits, torch.zeros(len(query), dtype=torch.long,
                                                   device=query.device))


def location_infonce(query: torch.Tensor, locations: torch.Tensor, latlon: torch.Tensor,
                     queue_locations: torch.Tensor | None, queue_latlon: torch.Tensor | None,
                     logit_scale: torch.Tensor, same_place_deg: float = 1e-6,
                     queue_valid: torch.Tensor | None = None,
                     chunk: int = ROW_CHUNK) -> torch.Tensor:
    """InfoNCE from embeddings to location embeddings: the positive is the view's own
    location; negatives are the batch's other locations and the queue's (its entries
    where ``queue_valid``, all if None).

    A negative at the same place as the positive (within ``same_place_deg``) is masked out:
    a location must not be its own negative.
    """
    query, locations, latlon = (gather_with_grad(query), gather_with_grad(locations),
                                gather_no_grad(latlon))
    keys, key_latlon = locations, latlon
    candidate = torch.ones(len(locations), dtype=torch.bool, device=query.device)
    if queue_locations is not None and len(queue_locations):
        keys = torch.cat([locations, queue_locations.to(locations.dtype)])
        key_latlon = torch.cat([latlon, queue_latlon.to(latlon.dtype)])
        valid = torch.ones(len(queue_locations), dtype=torch.bool, device=query.device) \
            if queue_valid is None else queue_valid
        candidate = torch.cat([candidate, valid])
    columns = torch.arange(len(keys), device=query.device)

    def excluded(start: int, stop: int) -> torch.Tensor:
        same = (latlon[start:stop, None, :] - key_latlon[None]).abs().amax(-1) <= same_place_deg
        own = columns[None, :] == torch.arange(start, stop, device=query.device)[:, None]
        return (same | ~candidate[None, :]) & ~own

    return _cross_entropy_by_rows(query, keys, logit_scale,
                                  torch.arange(len(query), device=query.device), excluded, chunk)


class LocationQueue(nn.Module):
    """The most recent ``size`` training coordinates (lat, lon), re-encoded every step.

    Fixed size, filled in order from slot 0: the slots in use are those below ``count``
    (:meth:`valid`), so reading and pushing never wait for the device (no host sync).
    ``random_start``: begin full of random unit 2-vectors read as (lat, lon) in degrees,
    as the official code and GeoCLIP start theirs (else empty)."""

    def __init__(self, size: int, random_start: bool = False, seed: int = 0) -> None:
        super().__init__()
        self.size = size
        start = torch.zeros(size, 2)
        if random_start:
            start = F.normalize(torch.randn(size, 2, generator=torch.Generator().manual_seed(seed)),
                                dim=1)
        self.register_buffer("latlon", start)
        self.register_buffer("count", torch.tensor(size if random_start else 0))
        self.register_buffer("pointer", torch.zeros((), dtype=torch.long))

    def valid(self) -> torch.Tensor:
        """[size] bool: the slots holding a coordinate."""
        return torch.arange(self.size, device=self.count.device) < self.count

    def filled(self) -> torch.Tensor:
        """The coordinates held (a host sync: for inspection, not the training step)."""
        return self.latlon[self.valid()]

    @torch.no_grad()
    def push(self, latlon: torch.Tensor) -> None:
        latlon = gather_no_grad(latlon.float())[-self.size :]
        index = (self.pointer + torch.arange(len(latlon), device=latlon.device)) % self.size
        self.latlon[index] = latlon
        self.pointer.copy_((self.pointer + len(latlon)) % self.size)
        self.count.add_(len(latlon))


def distillation(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """-mean cos(student, teacher): the official distillation term (teacher detached),
    in float32."""
    return -F.cosine_similarity(student.float(), teacher.detach().float(), dim=-1).mean()


class GAIRLoss(nn.Module):
    """weight_incl·INCL + weight_secl_sv·SECL(SV→loc) + weight_secl_rs·SECL(RS→loc)
    (+ weight_distill_sv·distill_sv + weight_distill_rs·distill_rs where teachers are given)."""

    TERMS = ("incl", "secl_sv", "secl_rs")
    DISTILL_TERMS = ("distill_sv", "distill_rs")

    def __init__(self, config: LossConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or LossConfig()
        n = 1 if cfg.shared_temperature else len(self.TERMS)
        init = torch.full((n,), math.log(1.0 / cfg.temperature))
        self.logit_scale = nn.Parameter(init, requires_grad=cfg.learnable_temperature)
        self.queue = LocationQueue(cfg.queue_size, random_start=cfg.secl_negatives == "queue") \
            if cfg.queue_size > 0 else None

    def scale(self, term: str) -> torch.Tensor:
        index = 0 if self.config.shared_temperature else self.TERMS.index(term)
        return self.logit_scale[index].clamp(max=MAX_LOGIT_SCALE)

    def secl(self, query: torch.Tensor, embeddings: dict[str, torch.Tensor], latlon: torch.Tensor,
             queue_emb: torch.Tensor | None, queue_latlon: torch.Tensor | None,
             queue_valid: torch.Tensor | None, term: str) -> torch.Tensor:
        if self.config.secl_negatives == "queue" and queue_emb is not None:
            return queue_infonce(query, embeddings["location"], queue_emb, self.scale(term))
        # Without a location encoder (validation) the queue is not re-encoded: batch only.
        return location_infonce(query, embeddings["location"], latlon, queue_emb, queue_latlon,
                                self.scale(term), queue_valid=queue_valid)

    def forward(self, embeddings: dict[str, torch.Tensor], latlon: torch.Tensor,
                location_encoder: nn.Module | None = None,
                teacher: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Loss terms and their weighted sum ``loss``; updates the queue when training.

        ``teacher`` may hold frozen teachers' ``sv`` and ``rs_global`` features, compared
        with the student's ``sv_pooled`` (before projection) and ``rs_global``."""
        cfg = self.config
        queue_latlon = queue_emb = queue_valid = None
        if self.queue is not None and location_encoder is not None:
            # Every slot is encoded, empty ones masked: the same shapes every step.
            queue_latlon, queue_valid = self.queue.latlon.to(latlon), self.queue.valid()
            queue_emb = F.normalize(location_encoder(queue_latlon), dim=-1)
        queue = (queue_emb, queue_latlon, queue_valid)
        terms = {
            "incl": symmetric_infonce(embeddings["sv"], embeddings["rs_query"], self.scale("incl")),
            "secl_sv": self.secl(embeddings["sv"], embeddings, latlon, *queue, "secl_sv"),
            "secl_rs": self.secl(embeddings["rs_query"], embeddings, latlon, *queue, "secl_rs"),
        }
        terms["loss"] = (cfg.weight_incl * terms["incl"] + cfg.weight_secl_sv * terms["secl_sv"]
                         + cfg.weight_secl_rs * terms["secl_rs"])
        for term, student, key in (("distill_sv", "sv_pooled", "sv"),
                                   ("distill_rs", "rs_global", "rs_global")):
            if teacher and key in teacher:
                terms[term] = distillation(embeddings[student], teacher[key])
                terms["loss"] = terms["loss"] + getattr(cfg, f"weight_{term}") * terms[term]
        if self.training and self.queue is not None:
            self.queue.push(latlon.detach())
        return terms
