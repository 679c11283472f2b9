"""Downstream tasks on the sample world, labelled from its hidden truth.

The truth folder holds, per tile, a land-cover raster (``landcover/<tile_id>``; a tile's id is
its file's path under the tiles folder; class codes of ``legend.csv``) and continuous fields
(``fields/<tile_id>``: affluence, urbanity) on the tile's own grid, and
``street_views.csv`` with each view's truth.

Every item is assigned the split of its spatial block as the pairing step assigned it
(blocks without a street view by a keyed hash of the block alone), so train, val and test
are the same places for pretraining and evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
from rasterio.windows import Window

from gair.geo.crs import transform_grouped
from gair.geo.pairing import (
    TileGrid,
    hashed_splits,
    overlapping_pairs,
    patch_footprints,
    world_blocks,
)

LANDCOVER = "landcover"
FIELDS = "fields"


@dataclass(frozen=True)
class SpatialSplit:
    """The pairing step's block size, split fractions and seed, its block -> split, and
    the footprints of its RS patches (``tile_id``, ``row_off``, ``col_off``, ``split``;
    ``patch_size`` px square), whose pixels pretraining saw in their split."""

    block_km: float
    fractions: dict[str, float]
    seed: int
    known: dict[int, str]
    footprints: pd.DataFrame
    patch_size: int

    @classmethod
    def of_pairs(cls, pairs: pd.DataFrame, block_km: float, fractions: dict[str, float],
                 seed: int, patch_size: int) -> SpatialSplit:
        known = dict(zip(pairs["block"].astype("int64"), pairs["split"], strict=True))
        footprints = pairs[["tile_id", "row_off", "col_off", "split"]].drop_duplicates()
        return cls(block_km, dict(fractions), seed, known,
                   footprints.astype({"row_off": "int64", "col_off": "int64"}), patch_size)

    def of_blocks(self, blocks: np.ndarray) -> np.ndarray:
        """Split name per block key; blocks without a street view by their own hash."""
        unique = np.unique(blocks)
        names = list(self.fractions)
        unseen = np.array([b for b in unique if int(b) not in self.known], dtype=np.int64)
        mapping = dict(self.known)
        if len(unseen):
            codes = hashed_splits(unseen, self.fractions, self.seed)
            mapping |= {int(b): names[c] for b, c in zip(unseen, codes, strict=True)}
        return np.array([mapping[int(b)] for b in blocks], dtype=object)

    def of_points(self, grid: TileGrid, tile: np.ndarray, col: np.ndarray,
                  row: np.ndarray) -> np.ndarray:
        """Split of points given by tile index and fractional pixel position."""
        lat, lon = _pixel_to_latlon(grid, tile, col, row)
        return self.of_blocks(world_blocks(lat, lon, self.block_km))


def read_truth(truth_dir: Path, kind: str, tile_id: str, row_off: int = 0, col_off: int = 0,
               size: int | None = None, band: int = 1) -> np.ndarray:
    """A window (or the whole) of one band of a tile's truth raster."""
    path = Path(truth_dir) / kind / tile_id
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no {kind} truth for tile {tile_id}")
    with rasterio.open(path) as src:
        window = None if size is None else Window(col_off, row_off, size, size)
        return src.read(band, window=window)


def _pixel_to_latlon(grid: TileGrid, tile: np.ndarray, col: np.ndarray,
                     row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lat, lon) of fractional pixel positions (col, row) of tiles."""
    t = grid.transforms[tile]
    x, y = t[:, 2] + t[:, 0] * col + t[:, 1] * row, t[:, 5] + t[:, 3] * col + t[:, 4] * row
    lon, lat = transform_grouped(x, y, grid.crs_index[tile], grid.crs_codes, inverse=True)
    return lat, lon


def street_view_targets(pairs: pd.DataFrame, truth_dir: Path, street_views: pd.DataFrame,
                        perception: tuple[str, ...]) -> pd.DataFrame:
    """Per paired street view: ``uuid``, ``split``, ``patch_id``, ``lat``, ``lon``,
    ``landcover`` (truth at the view), the ``perception`` score columns of the ingested
    ``street_views`` and the truth ``affluence`` field at the view."""
    truth = pd.read_csv(Path(truth_dir) / "street_views.csv", dtype={"uuid": str})
    missing_columns = [c for c in perception if c not in street_views.columns]
    if missing_columns:
        raise ValueError(f"street views lack perception columns {missing_columns} (is the "
                         "perception table among ingest's label_tables?)")
    table = pairs[["uuid", "split", "patch_id", "lat", "lon"]].merge(
        truth[["uuid", "landcover", "affluence"]], on="uuid", how="left", validate="one_to_one")
    table = table.merge(pd.DataFrame(street_views)[["uuid", *perception]], on="uuid",
                        how="left", validate="one_to_one")
    missing = table[table.isna().any(axis=1)]
    if len(missing):
        raise ValueError(f"{truth_dir}: {len(missing)} paired street views lack truth or "
                         f"perception labels, e.g. {missing['uuid'].iloc[0]}")
    return table.reset_index(drop=True)


def within_patch_variation(targets: pd.DataFrame) -> dict[str, float]:
    """How much the truth at the street views varies inside their RS patches: the share of
    patches (with two views or more) whose views stand on different land cover, and the
    share of the affluence variance that lies within patches. Where these are small, a
    view's position inside its patch cannot matter much, whatever the model."""
    shared = targets[targets.groupby("patch_id")["uuid"].transform("size") >= 2]
    if shared.empty:
        return {"patches_with_2_views": 0.0, "mixed_landcover_share": 0.0,
                "affluence_variance_within": 0.0}
    groups = shared.groupby("patch_id")
    mixed = float((groups["landcover"].nunique() > 1).mean())
    within = float(((shared["affluence"] - groups["affluence"].transform("mean")) ** 2).sum())
    total = float(((shared["affluence"] - shared["affluence"].mean()) ** 2).sum())
    return {"patches_with_2_views": float(groups.ngroups), "mixed_landcover_share": mixed,
            "affluence_variance_within": within / total if total else 0.0}


def sample_patches(tiles: pd.DataFrame, truth_dir: Path, split: SpatialSplit, patch_size: int,
                   stride: int) -> tuple[gpd.GeoDataFrame, dict[str, int]]:
    """RS patches on a ``stride`` grid over every tile, labelled with their dominant land
    cover, each in the split of its spatial block.

    A patch whose footprint reaches into a block of another split is left out (its pixels
    would be seen in two splits), and so is one that overlaps a pairing patch of another
    split, of any tile, by the pairing step's rule (a pairing patch takes the split of its
    centre, so a train patch can reach into a test block, and pretraining saw its
    pixels); the counts say how many.
    Columns: ``tile_id``, ``row_off``, ``col_off``, ``split``, ``landcover``,
    ``dominant_fraction``; geometry: the footprint's centre in EPSG:4326.
    """
    grid = TileGrid.from_index(tiles)
    rows = []
    for t in range(len(grid.tile_ids)):
        offsets = np.arange(0, max(int(grid.widths[t]), int(grid.heights[t])) - patch_size + 1,
                            stride)
        for r in offsets[offsets + patch_size <= grid.heights[t]]:
            for c in offsets[offsets + patch_size <= grid.widths[t]]:
                rows.append((t, int(r), int(c)))
    if not rows:
        raise ValueError(f"no tile is as large as a {patch_size}-px patch")
    tile, row_off, col_off = (np.array(v) for v in zip(*rows, strict=True))
    inset = 0.5  # corner pixel centres: a patch ending exactly on a block edge stays inside
    corners = [(col_off + dx, row_off + dy) for dx in (inset, patch_size - inset)
               for dy in (inset, patch_size - inset)]
    centre = split.of_points(grid, tile, col_off + patch_size / 2, row_off + patch_size / 2)
    straddles = np.zeros(len(tile), dtype=bool)
    for c, r in corners:
        straddles |= split.of_points(grid, tile, c, r) != centre
    # The pairing step's rule: no ground in two splits, whichever tiles the patches are of.
    overlaps = np.zeros(len(tile), dtype=bool)
    paired = split.footprints
    index_of = {tile_id: k for k, tile_id in enumerate(grid.tile_ids)}
    paired_outlines = patch_footprints(grid, paired["tile_id"].map(index_of).to_numpy(),
                                       paired["row_off"].to_numpy(), paired["col_off"].to_numpy(),
                                       patch_size)
    candidates = np.flatnonzero(~straddles)
    i, _ = overlapping_pairs(patch_footprints(grid, tile[candidates], row_off[candidates],
                                              col_off[candidates], patch_size), paired_outlines,
                             centre[candidates], paired["split"].to_numpy())
    overlaps[candidates[i]] = True
    keep = ~straddles & ~overlaps
    table = pd.DataFrame({"tile_id": grid.tile_ids[tile[keep]], "row_off": row_off[keep],
                          "col_off": col_off[keep], "split": centre[keep]})
    labels, fractions = [], []
    for tile_id, r, c in table[["tile_id", "row_off", "col_off"]].itertuples(index=False):
        mask = read_truth(truth_dir, LANDCOVER, tile_id, r, c, patch_size)
        counts = np.bincount(mask.ravel())
        labels.append(int(counts.argmax()))
        fractions.append(float(counts.max() / mask.size))
    table["landcover"], table["dominant_fraction"] = labels, fractions
    lat, lon = _pixel_to_latlon(grid, tile[keep], col_off[keep] + patch_size / 2,
                                row_off[keep] + patch_size / 2)
    counts = {"candidates": len(tile), "kept": int(keep.sum()),
              "left_out_straddling_splits": int(straddles.sum()),
              "left_out_overlapping_other_split_pairs": int(overlaps.sum())}
    return gpd.GeoDataFrame(table, geometry=gpd.points_from_xy(lon, lat), crs="EPSG:4326"), counts


def patch_masks(patches: pd.DataFrame, truth_dir: Path, patch_size: int) -> np.ndarray:
    """Land-cover masks [N, S, S] of the patches."""
    return np.stack([read_truth(truth_dir, LANDCOVER, t, r, c, patch_size) for t, r, c in
                     patches[["tile_id", "row_off", "col_off"]].itertuples(index=False)])


def sample_points(tiles: pd.DataFrame, truth_dir: Path, split: SpatialSplit, per_tile: int,
                  seed: int) -> gpd.GeoDataFrame:
    """Random points in every tile with the land cover under them: ``tile_id``, ``lat``,
    ``lon``, ``split``, ``landcover``; point geometry in EPSG:4326."""
    grid = TileGrid.from_index(tiles)
    rng = np.random.default_rng(seed)
    parts = []
    for t, tile_id in enumerate(grid.tile_ids):
        col = rng.uniform(0, grid.widths[t], per_tile)
        row = rng.uniform(0, grid.heights[t], per_tile)
        landcover = read_truth(truth_dir, LANDCOVER, tile_id)
        parts.append(pd.DataFrame({"tile": t, "col": col, "row": row,
                                   "landcover": landcover[row.astype(int), col.astype(int)]}))
    table = pd.concat(parts, ignore_index=True)
    tile = table.pop("tile").to_numpy()
    col, row = table.pop("col").to_numpy(), table.pop("row").to_numpy()
    table.insert(0, "tile_id", grid.tile_ids[tile])
    table["lat"], table["lon"] = _pixel_to_latlon(grid, tile, col, row)
    table["split"] = split.of_points(grid, tile, col, row)
    return gpd.GeoDataFrame(table, geometry=gpd.points_from_xy(table["lon"], table["lat"]),
                            crs="EPSG:4326")


def location_gallery(tiles: pd.DataFrame, spacing_m: float) -> np.ndarray:
    """(lat, lon) [M, 2] of a regular grid of points every ``spacing_m`` over every tile:
    the candidate locations of geolocalisation by retrieval."""
    grid = TileGrid.from_index(tiles)
    parts = []
    for t in range(len(grid.tile_ids)):
        step = spacing_m / abs(grid.transforms[t, 0])
        cols = np.arange(step / 2, grid.widths[t], step)
        rows = np.arange(step / 2, grid.heights[t], step)
        c, r = np.meshgrid(cols, rows)
        tile = np.full(c.size, t)
        lat, lon = _pixel_to_latlon(grid, tile, c.ravel(), r.ravel())
        parts.append(np.column_stack([lat, lon]))
    return np.concatenate(parts)
