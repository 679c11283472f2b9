"""Embed your own locations, street views and Sentinel-2 patches with a trained GAIR.

Every function takes a :class:`~gair.embed.FrozenGAIR` (``gair.load_model(path)``),
checks its inputs against the checkpoint's preprocessing contract, runs in batches with a
progress bar on the model's device, and returns a table with one array column per embedding
(a GeoDataFrame in EPSG:4326 where the rows have places; street views from files have none);
:func:`write_geoparquet` writes one atomically. Coordinates are
always (lat, lon) in degrees, in that order.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
import rasterio.warp
from PIL import Image
from tqdm.auto import tqdm

from gair.contract import ContractError
from gair.embed.model import FrozenGAIR
from gair.geo.pairing import pair_points
from gair.io.sentinel2 import L2A_BANDS, read_patch, read_tile_index, tile_records, to_reflectance


def _latlon(table: pd.DataFrame | np.ndarray, lat: str, lon: str) -> np.ndarray:
    if isinstance(table, pd.DataFrame):
        missing = [c for c in (lat, lon) if c not in table.columns]
        if missing:
            raise ContractError(f"location table lacks column(s) {missing} (lat, lon in degrees)")
        return table[[lat, lon]].to_numpy(dtype=np.float64)
    return np.asarray(table, dtype=np.float64).reshape(-1, 2)


def _frame(latlon: np.ndarray, columns: dict[str, object]) -> gpd.GeoDataFrame:
    frame = pd.DataFrame({"lat": latlon[:, 0], "lon": latlon[:, 1]} | columns)
    return gpd.GeoDataFrame(frame, geometry=gpd.points_from_xy(frame["lon"], frame["lat"]),
                            crs="EPSG:4326")


def _arrays(values: np.ndarray) -> list[np.ndarray]:
    return list(np.asarray(values, dtype=np.float32))


def embed_locations(model: FrozenGAIR, table: pd.DataFrame | np.ndarray, lat: str = "lat",
                    lon: str = "lon", batch_size: int = 8192) -> gpd.GeoDataFrame:
    """Location embeddings of a table with ``lat``/``lon`` columns (or an [N, 2] array of
    (lat, lon)); a (lon, lat)-swapped table is refused where |lat| > 90."""
    latlon = _latlon(table, lat, lon)
    parts = [model.encode_locations(latlon[i : i + batch_size], batch_size)
             for i in tqdm(range(0, len(latlon), batch_size), desc="embed locations",
                           unit="batch", disable=None)]
    embeddings = np.concatenate(parts) if parts else np.zeros((0, model.model.config.embed_dim))
    return _frame(latlon, {"location": _arrays(embeddings)})


def embed_street_views(model: FrozenGAIR, paths: Sequence[str | Path],
                       batch_size: int = 64) -> pd.DataFrame:
    """Embeddings of street-view image files (any format PIL reads, turned to RGB):
    a table of ``path`` and ``sv``."""
    paths = [Path(p) for p in paths]
    embeddings = []
    for start in tqdm(range(0, len(paths), batch_size), desc="embed street views",
                      unit="batch", disable=None):
        images = []
        for path in paths[start : start + batch_size]:
            with Image.open(path) as image:
                images.append(image.convert("RGB"))
        embeddings.append(model.encode_street_views(images))
    values = np.concatenate(embeddings) if embeddings else np.zeros((0, 0), np.float32)
    return pd.DataFrame({"path": [str(p) for p in paths], "sv": _arrays(values)})


def embed_rs_patches(model: FrozenGAIR, geotiffs: Sequence[str | Path],
                     band_order: Sequence[str] = L2A_BANDS, boa_add_offset: int = -1000,
                     batch_size: int = 64) -> gpd.GeoDataFrame:
    """Global RS embeddings of Sentinel-2 patches given as GeoTIFFs of stacked bands in
    ``band_order`` (digital numbers; ``boa_add_offset`` -1000 for processing baseline >=
    04.00, 0 before). GAIR's bands are picked by name; the pixel size must be the
    contract's. Returns ``path``, ``rs_global`` and the patch centre."""
    rs = model.contract.rs
    missing = [b for b in rs.bands if b not in band_order]
    if missing:
        raise ContractError(f"band order {list(band_order)} lacks {missing}; the model "
                            f"expects {list(rs.bands)}")
    pick = [list(band_order).index(b) + 1 for b in rs.bands]
    patches, valid, centres = [], [], []
    for path in geotiffs:
        with rasterio.open(path) as src:
            if src.count != len(band_order):
                raise ContractError(f"{path}: {src.count} bands where the band order names "
                                    f"{len(band_order)} ({', '.join(band_order)})")
            if abs(abs(src.transform.a) - rs.ground_resolution_m) > 0.01 * rs.ground_resolution_m:
                raise ContractError(f"{path}: {abs(src.transform.a)} m pixels where "
                                    f"{rs.ground_resolution_m} m are expected")
            raw = src.read(pick)
            if raw.dtype.kind == "f":  # digital numbers are integers; refuse what is not
                rs.check(raw)
                raise ContractError(f"{path}: {raw.dtype} values where uint16 digital "
                                    "numbers are expected")
            reflectance, ok = to_reflectance(raw, boa_add_offset)
            x, y = src.xy(src.height / 2 - 0.5, src.width / 2 - 0.5)
            lon, lat = rasterio.warp.transform(src.crs, "EPSG:4326", [x], [y])
        patches.append(reflectance)
        valid.append(ok)
        centres.append((lat[0], lon[0]))
    pooled = []
    for start in tqdm(range(0, len(patches), batch_size), desc="embed RS patches",
                      unit="batch", disable=None):
        _, glob = model.encode_rs(np.stack(patches[start : start + batch_size]),
                                  np.stack(valid[start : start + batch_size]))
        pooled.append(glob)
    latlon = np.array(centres, dtype=np.float64).reshape(-1, 2)
    return _frame(latlon, {"path": [str(p) for p in geotiffs],
                           "rs_global": _arrays(np.concatenate(pooled)) if pooled else []})


def encode_tile_patches(model: FrozenGAIR, patches: pd.DataFrame, tiles: pd.DataFrame,
                        sentinel2_dir: str | Path, patch_size: int,
                        batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Token grids [N, C, h, w] and global embeddings [N, D] of square patches of tiles.

    ``patches`` has ``tile_id``, ``row_off`` and ``col_off`` (the patch's first pixel);
    ``tiles`` is the ingest tile index. Patches are cut with the pairing step's reader, so
    they match the training patches exactly.
    """
    records = tile_records(tiles)
    rows = list(patches[["tile_id", "row_off", "col_off"]].itertuples(index=False))
    if not rows:
        raise ValueError("no patches to embed")
    grids, pooled = [], []
    for start in tqdm(range(0, len(rows), batch_size), desc="embed RS patches", unit="batch",
                      disable=None):
        read = [read_patch(sentinel2_dir, records[t], int(r), int(c), patch_size)
                for t, r, c in rows[start : start + batch_size]]
        grid, glob = model.encode_rs(np.stack([r for r, _ in read]), np.stack([v for _, v in read]))
        grids.append(grid)
        pooled.append(glob)
    return np.concatenate(grids), np.concatenate(pooled)


def embed_rs_at_points(model: FrozenGAIR, table: pd.DataFrame | np.ndarray,
                       sentinel2_dir: str | Path, tiles: pd.DataFrame | None = None,
                       lat: str = "lat", lon: str = "lon", band_order: Sequence[str] = L2A_BANDS,
                       processing_baseline: str = "auto", batch_size: int = 64,
                       ) -> gpd.GeoDataFrame:
    """RS embeddings at (lat, lon) points over a folder of Sentinel-2 tiles (indexed here
    with ``band_order`` and ``processing_baseline``, or given as the ingest step's tile
    index ``tiles``): each point's patch is cut exactly as the pairing step cuts it, and the
    result holds the patch's global embedding ``rs_global``, the NILI-queried embedding
    at the point ``rs_query``, and the point's ``location`` embedding, with ``tile_id``,
    ``patch_id``, ``qx`` and ``qy``. Points outside every tile keep their row, with no
    tile and no RS embeddings."""
    latlon = _latlon(table, lat, lon)
    locations = embed_locations(model, latlon)
    root = Path(sentinel2_dir)
    if tiles is None:
        tiles = read_tile_index(root, band_order=band_order,
                                processing_baseline=processing_baseline, verify="header").tiles
    size = model.contract.rs.patch_size_px
    placed = pair_points(latlon[:, 0], latlon[:, 1], tiles, size, 1.0, {"all": 1.0}, 0)
    inside = np.flatnonzero(placed["tile_id"].notna().to_numpy())
    rs_global = np.full((len(latlon),), None, dtype=object)
    rs_query = np.full((len(latlon),), None, dtype=object)
    if len(inside):
        rows = placed.iloc[inside]
        grid, glob = encode_tile_patches(model, rows, tiles, root, size, batch_size)
        query = model.query_rs(grid, rows[["qx", "qy"]].to_numpy(np.float32))
        rs_global[inside], rs_query[inside] = list(glob), list(query)
    columns = {"tile_id": placed["tile_id"], "patch_id": placed["patch_id"],
               "qx": placed["qx"], "qy": placed["qy"], "rs_global": list(rs_global),
               "rs_query": list(rs_query), "location": list(locations["location"])}
    return _frame(latlon, columns)


def write_geoparquet(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write a table of embeddings as (Geo)Parquet atomically (a partial file never stays)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.partial")
    try:
        frame.to_parquet(staging)
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)
    return path


__all__ = [
    "embed_locations",
    "embed_rs_at_points",
    "embed_rs_patches",
    "embed_street_views",
    "encode_tile_patches",
    "write_geoparquet",
]
