"""Frozen GAIR embeddings: street views, global and NILI-queried RS, RS token grids, locations.

:func:`load_frozen` rebuilds a model and its input transform from a pretraining checkpoint
(read with ``weights_only=True``: no unpickling of code); :func:`random_frozen` builds the
same architecture and preprocessing with random weights (the baseline). The ``embed_*``
functions run a frozen model in batches without gradients. Tables of embeddings are
GeoDataFrames with one array column per kind, written to GeoParquet as list columns.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from gair.io.sentinel2 import band_map_of, read_patch
from gair.io.shards import SAMPLES_TABLE, read_shard
from gair.model import GAIR, GAIRConfig
from gair.training.data import PairTransform

PAIR_EMBEDDINGS = ("sv", "rs_query", "rs_global", "location")
"""Embedding columns of :func:`embed_pairs`, as ``GAIR.forward`` names them."""


@dataclass
class FrozenGAIR:
    """A GAIR model in eval mode with the transform its training used."""

    model: GAIR
    transform: PairTransform
    hparams: dict[str, Any]
    device: torch.device

    @torch.no_grad()
    def encode_rs(self, reflectance: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Token grids [N, C, h, w] and global embeddings [N, D] of RS patches given as
        reflectance x 10000 [N, 10, S, S] with validity masks [N, S, S]."""
        rs = torch.stack([self.transform.rs(r, v) for r, v in zip(reflectance, valid, strict=True)])
        grid, pooled = self.model.encode_rs(rs.to(self.device))
        return grid.float().cpu().numpy(), pooled.float().cpu().numpy()

    @torch.no_grad()
    def encode_locations(self, latlon: np.ndarray) -> np.ndarray:
        """Location embeddings [N, D] of (lat, lon) in degrees [N, 2]."""
        x = torch.as_tensor(np.asarray(latlon, dtype=np.float32), device=self.device)
        return self.model.encode_location(x).float().cpu().numpy()


def _frozen(hparams: dict[str, Any], state_dict: dict[str, torch.Tensor] | None,
            device: str | torch.device) -> FrozenGAIR:
    model = GAIR(GAIRConfig(**hparams["model"]))
    if state_dict is not None:
        model.load_state_dict(state_dict)
    config = model.config
    transform = PairTransform(config.rs_encoder["img_size"], config.sv_encoder["img_size"],
                              hparams["band_mean"], hparams["band_std"], train=False)
    device = torch.device(device)
    return FrozenGAIR(model.to(device).eval(), transform, hparams, device)


def load_frozen(checkpoint: Path, device: str | torch.device = "cpu") -> FrozenGAIR:
    """The GAIR model of a pretraining checkpoint, frozen, with its input transform."""
    content = torch.load(checkpoint, map_location="cpu", weights_only=True)
    state = {k.removeprefix("model."): v for k, v in content["state_dict"].items()
             if k.startswith("model.")}
    return _frozen(content["hyper_parameters"], state, device)


def random_frozen(hparams: dict[str, Any], seed: int,
                  device: str | torch.device = "cpu") -> FrozenGAIR:
    """GAIR with the architecture and preprocessing of ``hparams`` and random weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _frozen(hparams, None, device)


def _batches(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def stack(table: pd.DataFrame, column: str) -> np.ndarray:
    """An embedding column of a table as one [N, D] float32 array."""
    return np.stack(table[column].to_numpy()).astype(np.float32)


def embed_pairs(frozen: FrozenGAIR, shards_dir: Path, batch_size: int = 64) -> gpd.GeoDataFrame:
    """Embeddings of every pair in the shards (all splits), one row per street view.

    Columns: the pairs table's ``uuid``, ``split``, ``tile_id``, ``patch_id``, ``lat``,
    ``lon``, ``qx``, ``qy`` and the embeddings ``sv``, ``rs_query`` (NILI at the street
    view), ``rs_global`` and ``location``; point geometry in EPSG:4326.
    """
    shards_dir = Path(shards_dir)
    samples = pd.read_parquet(shards_dir / SAMPLES_TABLE)
    shards = sorted(samples["shard"].unique())
    model, transform = frozen.model, frozen.transform
    rows: list[dict[str, Any]] = []
    stream = (s for shard in shards for s in read_shard(shards_dir / shard, transform.sv_size))
    with tqdm(total=len(samples), desc="embed pairs", unit="pair", disable=None) as progress:
        for batch in _batches(stream, batch_size):
            items = [transform(s) for s in batch]
            with torch.no_grad():
                out = model(*(torch.stack([i[k] for i in items]).to(frozen.device)
                              for k in ("rs", "sv", "query", "latlon")))
            arrays = {k: out[k].float().cpu().numpy() for k in PAIR_EMBEDDINGS}
            for n, item in enumerate(items):
                rows.append({"uuid": item["uuid"]} | {k: arrays[k][n] for k in PAIR_EMBEDDINGS})
            progress.update(len(batch))
    embedded = pd.DataFrame(rows)
    meta = samples[["uuid", "split", "tile_id", "patch_id", "lat", "lon", "qx", "qy"]]
    table = meta.merge(embedded, on="uuid", how="inner", validate="one_to_one")
    if len(table) != len(samples):
        raise ValueError(f"{shards_dir}: {len(samples)} samples listed, {len(table)} in shards")
    table = table.sort_values("uuid", kind="stable").reset_index(drop=True)
    return gpd.GeoDataFrame(table, geometry=gpd.points_from_xy(table["lon"], table["lat"]),
                            crs="EPSG:4326")


def embed_patches(frozen: FrozenGAIR, patches: pd.DataFrame, tiles: pd.DataFrame,
                  sentinel2_dir: Path, patch_size: int,
                  batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Global embeddings [N, D] and token grids [N, C, h, w] of RS patches.

    ``patches`` has ``tile_id``, ``row_off`` and ``col_off`` (the patch's first pixel in
    the tile); ``tiles`` is the ingest tile index. Patches are cut with the pairing
    step's reader, so they match the training patches exactly.
    """
    records = {r["tile_id"]: r | {"band_map": band_map_of(r)}
               for r in pd.DataFrame(tiles).drop(columns="geometry", errors="ignore")
               .to_dict("records")}
    grids, pooled = [], []
    rows = patches[["tile_id", "row_off", "col_off"]].itertuples(index=False)
    with tqdm(total=len(patches), desc="embed patches", unit="patch", disable=None) as progress:
        for batch in _batches(rows, batch_size):
            read = [read_patch(sentinel2_dir, records[t], r, c, patch_size) for t, r, c in batch]
            grid, glob = frozen.encode_rs(np.stack([r for r, _ in read]),
                                          np.stack([v for _, v in read]))
            grids.append(grid)
            pooled.append(glob)
            progress.update(len(batch))
    if not grids:
        raise ValueError("no patches to embed")
    return np.concatenate(pooled), np.concatenate(grids)


def embed_locations(frozen: FrozenGAIR, latlon: np.ndarray, batch_size: int = 8192) -> np.ndarray:
    """Location embeddings [N, D] of (lat, lon) in degrees [N, 2] (batched)."""
    latlon = np.asarray(latlon, dtype=np.float32)
    if len(latlon) and (np.abs(latlon[:, 0]) > 90).any():
        raise ValueError("latitude outside [-90, 90]: coordinates must be (lat, lon)")
    parts = [frozen.encode_locations(latlon[i : i + batch_size])
             for i in range(0, len(latlon), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, frozen.model.config.embed_dim),
                                                         np.float32)
