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
- Splits are by blocks of one grid for the whole world (:func:`world_blocks`); a patch
  is in the block of its centre. No ground is in two splits: where patches of two splits
  overlap (tiles overlap at every UTM zone line), the one in the less protected split
  (:func:`protection_order`) is not used, and its views are rejected with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import shapely

from gair.geo.crs import transform_grouped
from gair.geo.distance import KM_PER_DEGREE

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
    sensed: np.ndarray  # per tile: scene acquisition time (datetime64[ns], UTC; NaT unknown)

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
            sensed=scene_times(tiles),
        )


def scene_times(tiles: pd.DataFrame) -> np.ndarray:
    """Per tile, its ``sensing_time`` as naive UTC datetime64[ns] (NaT where unknown)."""
    if "sensing_time" not in tiles:
        return np.full(len(tiles), np.datetime64("NaT"), "datetime64[ns]")
    times = pd.to_datetime(tiles["sensing_time"], utc=True, format="ISO8601")
    return times.dt.tz_localize(None).to_numpy("datetime64[ns]")


def days_apart(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a - b| in days (NaN where either is NaT)."""
    return np.abs((np.asarray(a, "datetime64[ns]") - np.asarray(b, "datetime64[ns]"))
                  / np.timedelta64(1, "D"))


def locate_in_tiles(lat: np.ndarray, lon: np.ndarray, grid: TileGrid,
                    captured: np.ndarray | None = None, max_days_apart: float | None = None):
    """Tile index (-1 if none) and fractional (col, row) on that tile's grid, per point.

    With ``max_days_apart``, only tiles sensed within that many days of the point's
    ``captured`` time (datetime64, UTC) hold it; an unknown time on either side holds none.
    """
    lat, lon = np.asarray(lat, float), np.asarray(lon, float)
    point_idx, tile_idx = grid.tree.query(shapely.points(lon, lat))
    if max_days_apart is not None:
        near = days_apart(np.asarray(captured)[point_idx], grid.sensed[tile_idx]) <= max_days_apart
        point_idx, tile_idx = point_idx[near], tile_idx[near]
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


def world_blocks(lat: np.ndarray, lon: np.ndarray, block_km: float) -> np.ndarray:
    """Block key (int64) of the block holding each (lat, lon) on one grid for the world.

    Rows are bands ``block_km`` of latitude high; each row is cut into as many equal
    columns of longitude as fit ``block_km`` wide at its middle latitude. Blocks are about
    ``block_km`` square everywhere, and a place is in the same block whichever tile, and
    whichever UTM zone, it is read from.
    """
    lat, lon = np.asarray(lat, np.float64), np.asarray(lon, np.float64)
    rows_total = int(np.ceil(180.0 * KM_PER_DEGREE / block_km))
    row = np.clip(np.floor((lat + 90.0) / 180.0 * rows_total), 0, rows_total - 1).astype(np.int64)
    middle = np.radians((row + 0.5) / rows_total * 180.0 - 90.0)
    columns = np.maximum(1, np.floor(360.0 * KM_PER_DEGREE * np.cos(middle) / block_km))
    col = np.floor((lon + 180.0) / 360.0 * columns).astype(np.int64) % columns.astype(np.int64)
    return (row << 32) | col


MIN_OVERLAP = 1e-3
"""Patches overlap when they share more than this share of the smaller one's area (patches
that only touch, or meet within float noise, do not)."""


def patch_footprints(grid: TileGrid, tile: np.ndarray, row_off: np.ndarray,
                     col_off: np.ndarray, size: int) -> np.ndarray:
    """Outlines in EPSG:4326 of ``size``-px square patches of tiles (their four corners)."""
    tile = np.asarray(tile, np.int64)
    t = grid.transforms[tile]
    corners = [(0, 0), (size, 0), (size, size), (0, size)]
    cols = np.stack([np.asarray(col_off, np.float64) + dc for dc, _ in corners], axis=1)
    rows = np.stack([np.asarray(row_off, np.float64) + dr for _, dr in corners], axis=1)
    x = t[:, 2, None] + t[:, 0, None] * cols + t[:, 1, None] * rows
    y = t[:, 5, None] + t[:, 3, None] * cols + t[:, 4, None] * rows
    lon, lat = transform_grouped(x.ravel(), y.ravel(), np.repeat(grid.crs_index[tile], 4),
                                 grid.crs_codes, inverse=True)
    return shapely.polygons(np.stack([lon, lat], axis=1).reshape(len(tile), 4, 2))


def overlapping_pairs(footprints: np.ndarray, others: np.ndarray,
                      apart: np.ndarray | None = None, other_apart: np.ndarray | None = None,
                      min_overlap: float = MIN_OVERLAP) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i, j) where ``footprints[i]`` and ``others[j]`` share more than
    ``min_overlap`` of the smaller one's area; with labels ``apart`` / ``other_apart``
    (e.g. split codes), only pairs whose labels differ (checked before any area)."""
    i, j = shapely.STRtree(others).query(footprints, predicate="intersects")
    if apart is not None:
        differ = np.asarray(apart)[i] != np.asarray(other_apart)[j]
        i, j = i[differ], j[differ]
    if not len(i):
        return i, j
    shared = shapely.area(shapely.intersection(footprints[i], others[j]))
    smaller = np.minimum(shapely.area(footprints[i]), shapely.area(others[j]))
    keep = shared > min_overlap * smaller
    return i[keep], j[keep]


def protection_order(fractions: dict[str, float]) -> np.ndarray:
    """Rank per split code, 0 the most protected: the smallest split first, and of equal
    ones the later (test before val). Where patches of two splits overlap, the less
    protected one yields, so the evaluation splits keep their ground."""
    names = list(fractions)
    order = sorted(range(len(names)), key=lambda k: (fractions[names[k]], -k))
    rank = np.empty(len(names), np.int64)
    rank[order] = np.arange(len(names))
    return rank


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
    pixel position, the patch (grid index and offset), the query coordinate, the block,
    the split code, and ``overlap``: a point whose patch, in a more protected split, shares
    ground with this point's patch (-1 if none; such a point cannot be used)."""

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
    overlap: np.ndarray
    split_names: tuple[str, ...]
    grid: TileGrid


def _near_another_tile(outlines: np.ndarray, tile: np.ndarray, lat: np.ndarray,
                       lon: np.ndarray, reach_m: float) -> np.ndarray:
    """Per patch centre (lat, lon) of ``tile``: whether it lies within ``reach_m`` of a
    tile other than its own (tile outlines' bounding boxes, widened conservatively), the
    only patches that can overlap another tile's."""
    west, south, east, north = shapely.bounds(outlines).T
    dlat = reach_m / 110_000.0  # metres per degree of latitude: at least 110.5 km
    widest = np.minimum(np.maximum(np.abs(south), np.abs(north)) + dlat, 89.0)
    dlon = reach_m / (111_000.0 * np.cos(np.radians(widest)))
    boxes = shapely.box(west - dlon, south - dlat, east + dlon, north + dlat)
    point, holder = shapely.STRtree(boxes).query(shapely.points(lon, lat))
    other = holder != tile[point]
    return np.bincount(point[other], minlength=len(lat)) > 0


def _overlaps_of_patches(grid: TileGrid, outlines: np.ndarray, tile: np.ndarray,
                         row_off: np.ndarray, col_off: np.ndarray, lat: np.ndarray,
                         lon: np.ndarray, split: np.ndarray, size: int,
                         fractions: dict[str, float]) -> np.ndarray:
    """Per item, an item whose patch is in a more protected split and overlaps its patch
    (-1 if none). A patch takes the block of its centre (``lat``, ``lon``), so patches
    that overlap can fall in two splits: a tile's last row and column of patches overlap
    their neighbours, and tiles overlap (by kilometres at every UTM zone line). Only
    those patches are compared, the rest cannot overlap."""
    key = (tile.astype(np.int64) << 42) | (row_off.astype(np.int64) << 21) | col_off
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    t, r, c = tile[first], row_off[first], col_off[first]
    reach = size * np.abs(grid.transforms[t, 0]).max() * np.sqrt(2)
    candidate = ((r + 2 * size > grid.heights[t]) | (c + 2 * size > grid.widths[t])
                 | _near_another_tile(outlines, t, lat[first], lon[first], reach))
    picked = np.flatnonzero(candidate)
    patch_split = split[first[picked]]
    footprints = patch_footprints(grid, t[picked], r[picked], c[picked], size)
    i, j = overlapping_pairs(footprints, footprints, patch_split, patch_split)
    rank = protection_order(fractions)
    yields = rank[patch_split[i]] > rank[patch_split[j]]
    overlap_of_patch = np.full(len(first), -1, np.int64)
    overlap_of_patch[picked[i[yields]]] = first[picked[j[yields]]]
    return overlap_of_patch[inverse.ravel()]


def pair_points_arrays(lat: np.ndarray, lon: np.ndarray, tiles: pd.DataFrame, patch_size: int,
                       block_km: float, fractions: dict[str, float], seed: int,
                       captured: np.ndarray | None = None,
                       max_days_apart: float | None = None) -> Pairing:
    """The whole pairing logic on arrays: tile lookup (within ``max_days_apart`` of the
    ``captured`` times, when given), patch, query coordinate, split."""
    grid = TileGrid.from_index(tiles)
    tile, col, row = locate_in_tiles(lat, lon, grid, captured, max_days_apart)
    found = np.flatnonzero(tile >= 0)
    t_found = tile[found]
    patch_row, patch_col, row_off, col_off, qx, qy = patch_of(
        col[found], row[found], patch_size, grid.widths[t_found], grid.heights[t_found]
    )
    # The block of a patch is the world block of its centre, so a patch is in one split.
    t = grid.transforms[t_found]
    cx = t[:, 2] + t[:, 0] * (col_off + patch_size / 2)
    cy = t[:, 5] + t[:, 4] * (row_off + patch_size / 2)
    centre_lon, centre_lat = transform_grouped(cx, cy, grid.crs_index[t_found], grid.crs_codes,
                                               inverse=True)
    blocks = world_blocks(centre_lat, centre_lon, block_km)
    splits = assign_splits(blocks, fractions, seed) if len(found) else np.empty(0, np.int8)
    overlap = (_overlaps_of_patches(grid, np.asarray(tiles.geometry), t_found, row_off,
                                    col_off, centre_lat, centre_lon, splits, patch_size,
                                    fractions) if len(found) else np.empty(0, np.int64))

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
        overlap=full(np.where(overlap >= 0, found[np.maximum(overlap, 0)], -1), -1, np.int64),
        split_names=tuple(fractions), grid=grid,
    )


def pair_points(lat: np.ndarray, lon: np.ndarray, tiles: pd.DataFrame, patch_size: int,
                block_km: float, fractions: dict[str, float], seed: int,
                captured: np.ndarray | None = None,
                max_days_apart: float | None = None) -> pd.DataFrame:
    """:func:`pair_points_arrays` as a table, one row per point in input order.

    Columns: ``tile_id`` (None outside every tile), ``row``, ``col`` (fractional pixel
    position in the tile), ``patch_row``, ``patch_col`` (grid index), ``row_off``,
    ``col_off`` (the patch's first pixel in the tile), ``patch_id``, ``qx``, ``qy``,
    ``block``, ``split`` (None outside) and ``overlaps``: the patch of a more protected
    split that shares ground with this one (None if none; the view cannot be used).
    With ``captured`` times: ``scene_days_apart``, days between capture and the tile's
    scene (NaN where either is unknown); ``max_days_apart`` limits it.
    """
    p = pair_points_arrays(lat, lon, tiles, patch_size, block_km, fractions, seed, captured,
                           max_days_apart)
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
    overlapping = p.overlap >= 0
    table["overlaps"] = None
    table.loc[overlapping, "overlaps"] = (
        table["patch_id"].to_numpy()[p.overlap[overlapping]] + " ("
        + table["split"].to_numpy()[p.overlap[overlapping]] + ")")
    if captured is not None:
        sensed = np.where(found, p.grid.sensed[np.maximum(p.tile, 0)], np.datetime64("NaT"))
        table["scene_days_apart"] = days_apart(captured, sensed)
    return table
