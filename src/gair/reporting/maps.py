"""Maps of tiles, patches and street views."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from gair.geo.crs import transformer

SPLIT_COLOURS = {"train": "#1f77b4", "val": "#ff7f0e", "test": "#2ca02c"}
MAX_PANELS = 12


def _patch_outline(tile: pd.Series, row_off: int, col_off: int, size: int):
    a, _, c, _, e, f = tile["transform"]
    x0, y0 = c + a * col_off, f + e * row_off
    xs = np.array([x0, x0 + a * size, x0 + a * size, x0, x0])
    ys = np.array([y0, y0, y0 + e * size, y0 + e * size, y0])
    return transformer(tile["crs"], "EPSG:4326").transform(xs, ys)


def pairing_map(pairs: pd.DataFrame, tiles: pd.DataFrame, rejected: pd.DataFrame,
                patch_size: int) -> Figure:
    """One panel per tile (lon/lat): outline, patches and views coloured by split, rejects as x.

    With more tiles than panels, a single overview of all views by split.
    """
    if len(tiles) > MAX_PANELS or len(tiles) == 0:
        figure = Figure(figsize=(10, 5.5), layout="constrained")
        ax = figure.add_subplot()
        for split, group in pairs.groupby("split"):
            ax.scatter(group["lon"], group["lat"], s=2, c=SPLIT_COLOURS.get(split, "grey"),
                       label=f"{split} ({len(group)})")
        ax.scatter(rejected["lon"], rejected["lat"], s=6, marker="x", c="k",
                   label=f"rejected ({len(rejected)})")
        ax.set(xlabel="longitude", ylabel="latitude", title=f"{len(tiles)} tiles")
        ax.legend(loc="lower left", fontsize="small")
        return figure
    columns = min(len(tiles), 3)
    rows = math.ceil(len(tiles) / columns)
    figure = Figure(figsize=(4.2 * columns, 4.2 * rows), layout="constrained")
    for k, (_, tile) in enumerate(tiles.iterrows()):
        ax = figure.add_subplot(rows, columns, k + 1)
        outline = np.asarray(tile.geometry.exterior.coords)
        ax.plot(outline[:, 0], outline[:, 1], c="k", lw=1)
        mine = pairs[pairs["tile_id"] == tile["tile_id"]]
        patches = mine.drop_duplicates("patch_id")
        for patch in patches.itertuples():
            lon, lat = _patch_outline(tile, int(patch.row_off), int(patch.col_off), patch_size)
            ax.fill(lon, lat, alpha=0.15, c=SPLIT_COLOURS.get(patch.split, "grey"), lw=0)
        for split, group in mine.groupby("split"):
            ax.scatter(group["lon"], group["lat"], s=6, c=SPLIT_COLOURS.get(split, "grey"),
                       label=split)
        west, south, east, north = tile.geometry.bounds
        pad_x, pad_y = (east - west) * 0.5, (north - south) * 0.5
        near = rejected[rejected["lon"].between(west - pad_x, east + pad_x)
                        & rejected["lat"].between(south - pad_y, north + pad_y)]
        if len(near):
            ax.scatter(near["lon"], near["lat"], s=14, marker="x", c="k", label="rejected")
        ax.set_title(f"{tile['tile_id']}\n{len(mine)} pairs, {len(patches)} patches",
                     fontsize="small")
        ax.tick_params(labelsize="x-small")
        ax.set_aspect(1.0 / max(math.cos(math.radians((south + north) / 2)), 1e-3))
        if k == 0:
            ax.legend(fontsize="x-small", loc="upper right")
    return figure
