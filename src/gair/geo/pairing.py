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

from dataclasses import dataclass

import numpy as np
import pandas as pd
import shapely

from gair.geo.crs import transform_grouped

_ENVELOPE_PAD_DEG = 1e-3
"""Footprint envelopes are padded (~100 m) so that the 4326 shortlist never misses a point
the native-CRS test would accept (densified outlines deviate by far less)."""


@dataclass(frozen=True)
class TileGrid:
    """Array view of a tile index, ready for vectorised lookups."""

    tile_ids: np.ndarray
    crs_codes: list[str]  # distinct CRSs
    crs_index: np.ndarray  # per tile: index into crs_codes
    transforms: np.ndarray  # (n, 6): a, b, c, d, e, f
    widths: np.ndarray
    heights: np.ndarray
    tree: shapely.STRtree

    @classmethod
    def from_index(cls, tiles: pd.DataFrame) -> TileGrid:
        envelopes = shapely.buffer(shapely.envelope(np.asarray(tiles.geometry)),
                                   _ENVELOPE_PAD_DEG, join_style="mitre")
        codes, index = np.unique(tiles["crs"].to_numpy(dtype=str), return_inverse=True)
        return cls(
            tile_ids=tiles["tile_id"].to_numpy(dtype=object),
            crs_codes=[str(c) for c in codes], crs_index=index.astype(np.int64),
            transforms=np.array([list(t) for t in tiles["transform"]], dtype=np.float64),
            widths=tiles["width"].to_numpy(dtype=np.int64),
            heights=tiles["height"].to_numpy(dtype=np.int64),
            tree=shapely.STRtree(envelopes),
        )


def locate_in_tiles(lat: np.ndarray, lon: np.ndarray, grid: TileGrid):
    """Tile index (-1 if none) and fractional (col, row) on that tile's grid, per point."""
    lat, lon = np.asarray(lat, float), np.asarray(lon, float)
    point_idx, tile_idx = grid.tree.query(shapely.points(lon, lat))
    x, y = transform_grouped(lon[point_idx], lat[point_idx], grid.crs_index[tile_idx],
                             grid.crs_codes)
    t = grid.transforms[tile_idx]
    col = (x - t[:, 2]) / t[:, 0]
    row = (y - t[:, 5]) / t[:, 4]
    width, height = grid.widths[tile_idx], grid.heights[tile_idx]
    margin = np.minimum(np.minimum(col, width - col), np.minimum(row, height - row))
    inside = margin > 0
    inside &= (col >= 0) & (row >= 0)
    # Best candidate per point: the inside one farthest from an edge.
    score = np.where(inside, margin, -np.inf)
    order = np.lexsort((-score, point_idx))
    first = np.ones(len(order), dtype=bool)
    first[1:] = point_idx[order][1:] != point_idx[order][:-1]
    best = order[first]
    best = best[inside[best]]
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


def spatial_blocks(crs_index: np.ndarray, x: np.ndarray, y: np.ndarray,
                   block_m: float) -> np.ndarray:
    """Block key (int64) of square ``block_m`` blocks on the grid of each tile's own CRS.

    Keyed by (CRS, block column, block row): tiles that share a CRS share its block grid,
    so their overlapping patches fall in the same blocks.
    """
    span = 1 << 26  # block indices up to +-33M blocks: 3,300 km at 100 m blocks
    bx = np.floor(x / block_m).astype(np.int64) + span // 2
    by = np.floor(y / block_m).astype(np.int64) + span // 2
    return (crs_index.astype(np.int64) << 52) | (bx << 26) | by


def _mix64(keys: np.ndarray, seed: int) -> np.ndarray:
    """SplitMix64 of the keys: a fixed, well-spread pseudo-random order of blocks."""
    z = keys.astype(np.uint64) + np.uint64((0x9E3779B97F4A7C15 * (seed + 1)) % 2**64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def split_at(position: np.ndarray, fractions: dict[str, float]) -> np.ndarray:
    """Split code (index into ``list(fractions)``) of positions in [0, 1) laid along the
    splits in their fractions."""
    bounds = np.cumsum([v / sum(fractions.values()) for v in fractions.values()])
    return np.minimum(np.searchsorted(bounds, position, side="right"),
                      len(fractions) - 1).astype(np.int8)


def assign_splits(blocks: np.ndarray, fractions: dict[str, float], seed: int) -> np.ndarray:
    """Split code (index into ``list(fractions)``) per item; a block's items share one split.

    Blocks are ordered by a keyed hash (deterministic, independent of input order), then
    cut where the cumulative item count crosses each split's fraction.
    """
    unique, inverse, counts = np.unique(blocks, return_inverse=True, return_counts=True)
    order = np.argsort(_mix64(unique, seed), kind="stable")
    # A block goes to the split in which its middle item falls.
    middle = (np.cumsum(counts[order]) - counts[order] / 2) / counts.sum()
    split_of_block = np.empty(len(unique), dtype=np.int8)
    split_of_block[order] = split_at(middle, fractions)
    return split_of_block[inverse]


def hashed_splits(blocks: np.ndarray, fractions: dict[str, float], seed: int) -> np.ndarray:
    """Split code per block from the block's own keyed hash, in the given fractions of
    blocks: for blocks that hold no items, whose split must not depend on which other
    blocks are asked about at the same time (as :func:`assign_splits`' would)."""
    uniform = (_mix64(np.asarray(blocks, np.int64), seed) >> np.uint64(11)) / float(2**53)
    return split_at(uniform, fractions)


@dataclass(frozen=True)
class Pairing:
    """Per point (input order): tile index (-1 outside every tile) and, where found, the
    pixel position, the patch (grid index and offset), the query coordinate, the block
    and the split code."""

    tile: np.ndarray
    row: np.ndarray
    col: np.ndarray
    patch_row: np.ndarray
    patch_col: np.ndarray
    row_off: np.ndarray
    col_off: np.ndarray
    qx: np.ndarray
    qy: np.ndarray
    block: np.ndarray
    split: np.ndarray
    split_names: tuple[str, ...]
    grid: TileGrid


def pair_points_arrays(lat: np.ndarray, lon: np.ndarray, tiles: pd.DataFrame, patch_size: int,
                       block_km: float, fractions: dict[str, float], seed: int) -> Pairing:
    """The whole pairing logic on arrays: tile lookup, patch, query coordinate, split."""
    grid = TileGrid.from_index(tiles)
    tile, col, row = locate_in_tiles(lat, lon, grid)
    found = np.flatnonzero(tile >= 0)
    t_found = tile[found]
    patch_row, patch_col, row_off, col_off, qx, qy = patch_of(
        col[found], row[found], patch_size, grid.widths[t_found], grid.heights[t_found]
    )
    # The block of a patch is the block of its centre, so a patch never spans two splits.
    t = grid.transforms[t_found]
    cx = t[:, 2] + t[:, 0] * (col_off + patch_size / 2)
    cy = t[:, 5] + t[:, 4] * (row_off + patch_size / 2)
    blocks = spatial_blocks(grid.crs_index[t_found], cx, cy, block_km * 1000.0)
    splits = assign_splits(blocks, fractions, seed) if len(found) else np.empty(0, np.int8)

    def full(values: np.ndarray, fill, dtype) -> np.ndarray:
        out = np.full(len(tile), fill, dtype=dtype)
        out[found] = values
        return out

    return Pairing(
        tile=tile, row=row, col=col,
        patch_row=full(patch_row, -1, np.int64), patch_col=full(patch_col, -1, np.int64),
        row_off=full(row_off, -1, np.int64), col_off=full(col_off, -1, np.int64),
        qx=full(qx, np.nan, float), qy=full(qy, np.nan, float),
        block=full(blocks, -1, np.int64), split=full(splits, -1, np.int8),
        split_names=tuple(fractions), grid=grid,
    )


def pair_points(lat: np.ndarray, lon: np.ndarray, tiles: pd.DataFrame, patch_size: int,
                block_km: float, fractions: dict[str, float], seed: int) -> pd.DataFrame:
    """:func:`pair_points_arrays` as a table, one row per point in input order.

    Columns: ``tile_id`` (None outside every tile), ``row``, ``col`` (fractional pixel
    position in the tile), ``patch_row``, ``patch_col`` (grid index), ``row_off``,
    ``col_off`` (the patch's first pixel in the tile), ``patch_id``, ``qx``, ``qy``,
    ``block`` and ``split`` (None outside).
    """
    p = pair_points_arrays(lat, lon, tiles, patch_size, block_km, fractions, seed)
    found = p.tile >= 0
    tile_id = np.where(found, p.grid.tile_ids[np.maximum(p.tile, 0)], None)
    table = pd.DataFrame({"tile_id": tile_id, "row": p.row, "col": p.col})
    for name in ("patch_row", "patch_col", "row_off", "col_off"):
        table[name] = pd.array(np.where(found, getattr(p, name), 0), dtype="Int64")
        table.loc[~found, name] = pd.NA
    table["patch_id"] = None
    table.loc[found, "patch_id"] = [
        f"{t}:r{r:04d}c{c:04d}"
        for t, r, c in zip(tile_id[found], p.patch_row[found], p.patch_col[found], strict=True)
    ]
    table["qx"], table["qy"] = p.qx, p.qy
    table["block"] = pd.array(np.where(found, p.block, 0), dtype="Int64")
    table.loc[~found, "block"] = pd.NA
    names = np.array((*p.split_names, None), dtype=object)
    table["split"] = names[np.where(found, p.split, len(p.split_names))]
    return table
