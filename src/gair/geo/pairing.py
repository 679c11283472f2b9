"""Place street views in RS patches: tile lookup, patch grid, query coordinates, split.

Conventions (tested with an oracle in ``tests/geo/test_pairing.py``):

- A street view belongs to the tile whose native grid holds it, tested in the tile's own
  CRS (footprints in EPSG:4326 only shortlist candidates). Where tiles overlap, the one
  in which the point lies farthest from an edge wins.
- Patches are a fixed grid of ``P x P`` pixels per tile, so a street view lies anywhere
  inside its patch (not at its centre) and several views share a patch. The last patch
  of a row or column is moved inward to end at the tile's edge (it overlaps its
  neighbour by less than P pixels) so that no patch hangs over the edge.
- The query coordinate ``(qx, qy)`` is in [-1, 1]: ``qx`` west->east by column, ``qy``
  north->south by row, with pixel centres where ``grid_sample(align_corners=False)``
  reads them: pixel ``i`` of ``P`` has its centre at ``(2 i + 1) / P - 1``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
import shapely
from pyproj import Transformer

_ENVELOPE_PAD_DEG = 1e-3
"""Footprint envelopes are padded (~100 m) so that the 4326 shortlist never misses a point
the native-CRS test would accept (densified outlines deviate by far less)."""


@dataclass(frozen=True)
class TileGrid:
    """Array view of a tile index, ready for vectorised lookups."""

    tile_ids: np.ndarray
    crs: np.ndarray
    transforms: np.ndarray  # (n, 6): a, b, c, d, e, f
    widths: np.ndarray
    heights: np.ndarray
    tree: shapely.STRtree

    @classmethod
    def from_index(cls, tiles: pd.DataFrame) -> TileGrid:
        envelopes = shapely.buffer(shapely.envelope(np.asarray(tiles.geometry)),
                                   _ENVELOPE_PAD_DEG, join_style="mitre")
        return cls(
            tile_ids=tiles["tile_id"].to_numpy(dtype=object),
            crs=tiles["crs"].to_numpy(dtype=object),
            transforms=np.array([list(t) for t in tiles["transform"]], dtype=np.float64),
            widths=tiles["width"].to_numpy(dtype=np.int64),
            heights=tiles["height"].to_numpy(dtype=np.int64),
            tree=shapely.STRtree(envelopes),
        )


def project_points(lon: np.ndarray, lat: np.ndarray, crs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project each point into its own CRS: one pyproj call per distinct CRS."""
    x = np.empty(len(lon))
    y = np.empty(len(lon))
    codes, inverse = np.unique(crs.astype(str), return_inverse=True)
    for k, code in enumerate(codes):
        members = inverse == k
        x[members], y[members] = Transformer.from_crs(4326, str(code), always_xy=True).transform(
            lon[members], lat[members]
        )
    return x, y


def locate_in_tiles(lat: np.ndarray, lon: np.ndarray, grid: TileGrid):
    """Tile index (-1 if none) and fractional (col, row) on that tile's grid, per point."""
    lat, lon = np.asarray(lat, float), np.asarray(lon, float)
    point_idx, tile_idx = grid.tree.query(shapely.points(lon, lat))
    x, y = project_points(lon[point_idx], lat[point_idx], grid.crs[tile_idx])
    t = grid.transforms[tile_idx]
    col = (x - t[:, 2]) / t[:, 0]
    row = (y - t[:, 5]) / t[:, 4]
    width, height = grid.widths[tile_idx], grid.heights[tile_idx]
    margin = np.minimum.reduce([col, width - col, row, height - row])
    inside = (col >= 0) & (col < width) & (row >= 0) & (row < height)
    # Best candidate per point: inside first, then the largest margin.
    order = np.lexsort((-margin, ~inside, point_idx))
    first = np.ones(len(order), dtype=bool)
    first[1:] = point_idx[order][1:] != point_idx[order][:-1]
    best = order[first & inside[order]]
    tile = np.full(len(lat), -1, dtype=np.int64)
    cols = np.full(len(lat), np.nan)
    rows = np.full(len(lat), np.nan)
    tile[point_idx[best]] = tile_idx[best]
    cols[point_idx[best]] = col[best]
    rows[point_idx[best]] = row[best]
    return tile, cols, rows


def patch_of(col: np.ndarray, row: np.ndarray, patch_size: int, width: np.ndarray,
             height: np.ndarray):
    """Patch grid index, the patch's pixel offset in the tile, and the query coordinate.

    Returns ``(patch_row, patch_col, row_off, col_off, qx, qy)``.
    """
    patch_col = np.floor(col / patch_size).astype(np.int64)
    patch_row = np.floor(row / patch_size).astype(np.int64)
    col_off = np.maximum(np.minimum(patch_col * patch_size, width - patch_size), 0)
    row_off = np.maximum(np.minimum(patch_row * patch_size, height - patch_size), 0)
    qx = 2.0 * (col - col_off) / patch_size - 1.0
    qy = 2.0 * (row - row_off) / patch_size - 1.0
    return patch_row, patch_col, row_off, col_off, qx, qy


def patch_ids(tile_ids: np.ndarray, patch_row: np.ndarray, patch_col: np.ndarray) -> np.ndarray:
    return np.char.add(np.char.add(tile_ids.astype(str), ":r"),
                       np.char.add(np.char.add(np.char.zfill(patch_row.astype(str), 4), "c"),
                                   np.char.zfill(patch_col.astype(str), 4)))


def spatial_blocks(lat: np.ndarray, lon: np.ndarray, block_km: float) -> np.ndarray:
    """Equal-size (about ``block_km``) lat/lon blocks: rows of latitude, then longitude
    cells narrowed by the cosine of the row's latitude."""
    dlat = block_km / 111.32
    block_row = np.floor((lat + 90.0) / dlat).astype(np.int64)
    row_lat = -90.0 + (block_row + 0.5) * dlat
    dlon = dlat / np.maximum(np.cos(np.deg2rad(row_lat)), 1e-6)
    block_col = np.floor((lon + 180.0) / dlon).astype(np.int64)
    return np.char.add(np.char.add(block_row.astype(str), "_"), block_col.astype(str))


def assign_splits(blocks: np.ndarray, fractions: dict[str, float], seed: int) -> np.ndarray:
    """Split name per item; all items of a block share one split.

    Blocks are shuffled by a keyed hash (deterministic, independent of input order), then
    cut where the cumulative item count crosses each split's fraction.
    """
    total = sum(fractions.values())
    names = list(fractions)
    unique, inverse, counts = np.unique(blocks, return_inverse=True, return_counts=True)
    keys = np.array([hashlib.blake2b(f"{seed}:{b}".encode(), digest_size=8).hexdigest()
                     for b in unique])
    order = np.argsort(keys, kind="stable")
    # A block goes to the split in which its middle item falls.
    middle = (np.cumsum(counts[order]) - counts[order] / 2) / counts.sum()
    bounds = np.cumsum([fractions[n] / total for n in names])
    split_of_block = np.empty(len(unique), dtype=object)
    split_of_block[order] = np.array(names, dtype=object)[
        np.minimum(np.searchsorted(bounds, middle, side="right"), len(names) - 1)
    ]
    return split_of_block[inverse]


def pair_points(lat: np.ndarray, lon: np.ndarray, tiles: pd.DataFrame, patch_size: int,
                block_km: float, fractions: dict[str, float], seed: int) -> pd.DataFrame:
    """Pair street views with tiles and patches; one row per point, in input order.

    Returns columns ``tile_id`` (None outside every tile), ``row``, ``col`` (fractional
    pixel position in the tile), ``patch_row``, ``patch_col`` (grid index), ``row_off``,
    ``col_off`` (the patch's first pixel in the tile), ``patch_id``, ``qx``,
    ``qy``, ``block`` and ``split`` (None outside).
    """
    grid = TileGrid.from_index(tiles)
    tile, col, row = locate_in_tiles(lat, lon, grid)
    found = tile >= 0
    out = pd.DataFrame({"tile_id": pd.Series([None] * len(tile), dtype=object),
                        "row": row, "col": col})
    patch_row, patch_col, row_off, col_off, qx, qy = patch_of(
        col[found], row[found], patch_size, grid.widths[tile[found]], grid.heights[tile[found]]
    )
    ids = grid.tile_ids[tile[found]]
    # The block of a patch is the block of its centre, so a patch never spans two splits.
    t = grid.transforms[tile[found]]
    cx = t[:, 2] + t[:, 0] * (col_off + patch_size / 2)
    cy = t[:, 5] + t[:, 4] * (row_off + patch_size / 2)
    centre_lon, centre_lat = _unproject(cx, cy, grid.crs[tile[found]])
    blocks = spatial_blocks(centre_lat, centre_lon, block_km)
    out.loc[found, "tile_id"] = ids
    out["patch_row"] = pd.array(np.full(len(tile), pd.NA), dtype="Int64")
    out["patch_col"] = pd.array(np.full(len(tile), pd.NA), dtype="Int64")
    out.loc[found, "patch_row"] = patch_row
    out.loc[found, "patch_col"] = patch_col
    for name, values in (("row_off", row_off), ("col_off", col_off)):
        out[name] = pd.array(np.full(len(tile), pd.NA), dtype="Int64")
        out.loc[found, name] = values
    out["patch_id"] = pd.Series([None] * len(tile), dtype=object)
    out.loc[found, "patch_id"] = patch_ids(ids, patch_row, patch_col)
    out["qx"], out["qy"] = np.nan, np.nan
    out.loc[found, "qx"], out.loc[found, "qy"] = qx, qy
    out["block"] = pd.Series([None] * len(tile), dtype=object)
    out.loc[found, "block"] = blocks
    out["split"] = pd.Series([None] * len(tile), dtype=object)
    if found.any():
        out.loc[found, "split"] = assign_splits(blocks, fractions, seed)
    return out


def _unproject(x: np.ndarray, y: np.ndarray, crs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lon, lat = np.empty(len(x)), np.empty(len(x))
    codes, inverse = np.unique(crs.astype(str), return_inverse=True)
    for k, code in enumerate(codes):
        members = inverse == k
        lon[members], lat[members] = Transformer.from_crs(str(code), 4326, always_xy=True).transform(
            x[members], y[members]
        )
    return lon, lat
