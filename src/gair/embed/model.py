"""A trained GAIR model rebuilt from its checkpoint alone, frozen, with its contract."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gair.contract import CONTRACT_KEY, ContractError, LocationContract, PreprocessingContract
from gair.model import GAIR, GAIRConfig
from gair.training.data import PairTransform


@dataclass
class FrozenGAIR:
    """A GAIR model in eval mode, its preprocessing contract and the matching transform.

    The ``encode_*`` methods take arrays in the contract's units, check them against it,
    and return L2-normalised embeddings as float32 numpy arrays, in batches.
    """

    model: GAIR
    contract: PreprocessingContract
    hparams: dict[str, Any]
    device: torch.device

    def __post_init__(self) -> None:
        rs, sv = self.contract.rs, self.contract.sv
        self.transform = PairTransform(rs.model_input_px, sv.size_px, rs.band_mean, rs.band_std,
                                       train=False, sv_mean=sv.mean, sv_std=sv.std)

    @torch.no_grad()
    def encode_rs(self, reflectance: np.ndarray, valid: np.ndarray | None = None,
                  ) -> tuple[np.ndarray, np.ndarray]:
        """Token grids [N, C, h, w] and global embeddings [N, D] of RS patches given as
        the contract says (reflectance x 10000 [N, 10, S, S]); ``valid`` [N, S, S] marks
        pixels with data (default: no band is 0)."""
        self.contract.rs.check(reflectance)
        reflectance = np.asarray(reflectance)
        if valid is None:
            valid = (reflectance != self.contract.rs.nodata).all(axis=1)
        rs = torch.stack([self.transform.rs(r, v) for r, v in zip(reflectance, valid, strict=True)])
        grid, pooled = self.model.encode_rs(rs.to(self.device))
        return grid.float().cpu().numpy(), pooled.float().cpu().numpy()

    @torch.no_grad()
    def query_rs(self, grid: np.ndarray, query: np.ndarray) -> np.ndarray:
        """NILI-queried RS embeddings [N, D] of token grids [N, C, h, w] at query
        coordinates (x, y) in [-1, 1] [N, 2] (x west->east, y north->south)."""
        out = self.model.query_rs(torch.as_tensor(grid, device=self.device),
                                  torch.as_tensor(np.asarray(query, np.float32), device=self.device))
        return out.float().cpu().numpy()

    @torch.no_grad()
    def encode_street_views(self, images: list) -> np.ndarray:
        """Embeddings [N, D] of street views given as RGB PIL images (0-255)."""
        sv = torch.stack([self.transform.sv(image) for image in images])
        return self.model.encode_sv(sv.to(self.device)).float().cpu().numpy()

    @torch.no_grad()
    def encode_locations(self, latlon: np.ndarray, batch_size: int = 8192) -> np.ndarray:
        """Embeddings [N, D] of (lat, lon) in degrees [N, 2], in that order."""
        latlon = np.array(latlon, dtype=np.float32).reshape(-1, 2)  # a copy, C-ordered
        LocationContract.check(latlon)
        parts = [self.model.encode_location(torch.from_numpy(latlon[i : i + batch_size])
                                            .to(self.device))
                 .float().cpu().numpy() for i in range(0, len(latlon), batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, self.model.config.embed_dim),
                                                             np.float32)


def load_model(checkpoint: str | Path, device: str | torch.device = "cpu") -> FrozenGAIR:
    """Rebuild a trained GAIR from its checkpoint alone: architecture and preprocessing
    contract come from the file, read with ``weights_only=True`` (no code is unpickled),
    no training configuration and no network needed."""
    content = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if CONTRACT_KEY not in content:
        raise ContractError(f"{checkpoint}: no preprocessing contract in this checkpoint "
                            "(not written by gair's training)")
    hparams = content["hyper_parameters"]
    model = GAIR(GAIRConfig(**hparams["model"]))
    model.load_state_dict({k.removeprefix("model."): v for k, v in content["state_dict"].items()
                           if k.startswith("model.")})
    device = torch.device(device)
    return FrozenGAIR(model.to(device).eval(), PreprocessingContract.from_dict(
        content[CONTRACT_KEY]), hparams, device)


def random_like(trained: FrozenGAIR, seed: int) -> FrozenGAIR:
    """The same architecture and preprocessing as ``trained`` with random weights (the
    random-weights baseline), initialised from ``seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GAIR(GAIRConfig(**trained.hparams["model"]))
    return FrozenGAIR(model.to(trained.device).eval(), trained.contract, trained.hparams,
                      trained.device)
