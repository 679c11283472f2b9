"""Embeddings of the training pairs (as the shards hold them) with a frozen GAIR
(``gair.load_model``), batched, without gradients. Tables of embeddings are GeoDataFrames
with one array column per kind, written to GeoParquet as list columns."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import torch
from torch.utils.data import default_collate
from tqdm.auto import tqdm

from gair.embed.model import FrozenGAIR
from gair.io.shards import SAMPLES_TABLE, read_encoded_shard
from gair.preprocessing import preprocess_batch

PAIR_EMBEDDINGS = ("sv", "rs_query", "rs_centre", "rs_global", "location")
"""Embedding columns of :func:`embed_pairs`: ``GAIR.forward``'s, and ``rs_centre``, the
RS query at the patch centre (a position-free control for NILI)."""


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
    view), ``rs_centre`` (the same query at the patch centre), ``rs_global`` and
    ``location``; point geometry in EPSG:4326.
    """
    shards_dir = Path(shards_dir)
    samples = pd.read_parquet(shards_dir / SAMPLES_TABLE)
    shards = sorted(samples["shard"].unique())
    model = frozen.model
    rows: list[dict[str, Any]] = []
    # Decoded and preprocessed exactly as training's validation batches.
    stream = (frozen.decoder(s) for shard in shards for s in read_encoded_shard(shards_dir / shard))
    with tqdm(total=len(samples), desc="embed pairs", unit="pair", disable=None) as progress:
        for items in _batches(stream, batch_size):
            batch = {k: v.to(frozen.device) if torch.is_tensor(v) else v
                     for k, v in default_collate(items).items()}
            batch = preprocess_batch(batch, frozen.contract)
            rs, sv, query, latlon = (batch[k] for k in ("rs", "sv", "query", "latlon"))
            with torch.no_grad():  # GAIR.forward's embeddings, plus the query at the centre
                grid, rs_global = model.encode_rs(rs)
                out = {"sv": model.encode_sv(sv), "rs_query": model.query_rs(grid, query),
                       "rs_centre": model.query_rs(grid, torch.zeros_like(query)),
                       "rs_global": rs_global, "location": model.encode_location(latlon)}
            arrays = {k: out[k].float().cpu().numpy() for k in PAIR_EMBEDDINGS}
            for n, uuid in enumerate(batch["uuid"]):
                rows.append({"uuid": uuid} | {k: arrays[k][n] for k in PAIR_EMBEDDINGS})
            progress.update(len(items))
    embedded = pd.DataFrame(rows)
    meta = samples[["uuid", "split", "tile_id", "patch_id", "lat", "lon", "qx", "qy"]]
    table = meta.merge(embedded, on="uuid", how="inner", validate="one_to_one")
    if len(table) != len(samples):
        raise ValueError(f"{shards_dir}: {len(samples)} samples listed, {len(table)} in shards")
    table = table.sort_values("uuid", kind="stable").reset_index(drop=True)
    return gpd.GeoDataFrame(table, geometry=gpd.points_from_xy(table["lon"], table["lat"]),
                            crs="EPSG:4326")
