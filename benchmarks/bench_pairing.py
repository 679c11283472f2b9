"""Pairing at scale: N street views over M Sentinel-2 tiles in many UTM zones.

Times the pairing logic end to end (tile lookup, patch assignment, query coordinates,
spatial split; no image I/O) and, on the same data, the bare floor: one STRtree
point-in-tile query plus one pyproj transform per UTM zone. Prints one JSON line.

Usage: .venv/bin/python benchmarks/bench_pairing.py --points 1000000 [--tiles 10000]
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np
import pandas as pd
import shapely

from gair.geo.crs import transformer
from gair.geo.pairing import pair_points_arrays
from gair.geo.utm import utm_crs_for
from gair.io.sentinel2 import tile_footprint

TILE_PX = 10_980  # a real Sentinel-2 tile: 109.8 km at 10 m


def make_tiles(n_tiles: int, rng: np.random.Generator) -> pd.DataFrame:
    """Tiles at random places on land-ish latitudes, each in the UTM zone of its centre."""
    lat = rng.uniform(-56.0, 70.0, n_tiles)
    lon = rng.uniform(-180.0, 180.0, n_tiles)
    crs = [utm_crs_for(a, o).to_string() for a, o in zip(lat, lon, strict=True)]
    records = []
    for k, code in enumerate(crs):
        x, y = transformer("EPSG:4326", code).transform(lon[k], lat[k])
        west = np.floor((x - TILE_PX * 5) / 10) * 10
        north = np.floor((y + TILE_PX * 5) / 10) * 10
        records.append({"tile_id": f"T{k:05d}", "crs": code,
                        "transform": [10.0, 0.0, west, 0.0, -10.0, north],
                        "width": TILE_PX, "height": TILE_PX})
    tiles = pd.DataFrame(records)
    tiles["geometry"] = [tile_footprint(r) for r in records]
    return tiles


def make_points(tiles: pd.DataFrame, n_points: int, rng: np.random.Generator):
    """90 % of the points inside a random tile, 10 % anywhere (mostly outside every tile)."""
    inside = int(n_points * 0.9)
    which = rng.integers(0, len(tiles), inside)
    col = rng.uniform(0, TILE_PX, inside)
    row = rng.uniform(0, TILE_PX, inside)
    lon = np.empty(n_points)
    lat = np.empty(n_points)
    for code, members in tiles.groupby("crs").indices.items():
        chosen = np.isin(which, members)
        t = np.array(tiles["transform"].iloc[which[chosen]].tolist())
        x = t[:, 2] + t[:, 0] * col[chosen]
        y = t[:, 5] + t[:, 4] * row[chosen]
        lon[:inside][chosen], lat[:inside][chosen] = transformer(code, "EPSG:4326").transform(x, y)
    lat[inside:] = rng.uniform(-60, 75, n_points - inside)
    lon[inside:] = rng.uniform(-180, 180, n_points - inside)
    return lat, lon


def floor(lat: np.ndarray, lon: np.ndarray, tiles: pd.DataFrame) -> None:
    """The least any exact pairing must do: STRtree point-in-tile, one transform per zone."""
    codes, zone_of_tile = np.unique(tiles["crs"].to_numpy(dtype=str), return_inverse=True)
    tree = shapely.STRtree(np.asarray(tiles["geometry"]))
    point_idx, tile_idx = tree.query(shapely.points(lon, lat), predicate="intersects")
    zones = zone_of_tile[tile_idx]
    order = np.argsort(zones, kind="stable")
    bounds = np.searchsorted(zones[order], np.arange(len(codes) + 1))
    for k, code in enumerate(codes):
        members = point_idx[order[bounds[k] : bounds[k + 1]]]
        transformer("EPSG:4326", str(code)).transform(lon[members], lat[members])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--tiles", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    tiles = make_tiles(args.tiles, rng)
    lat, lon = make_points(tiles, args.points, rng)
    fractions = {"train": 0.8, "val": 0.1, "test": 0.1}

    floor(lat[:1000], lon[:1000], tiles)  # warm pyproj's CRS caches for both runs
    start = time.perf_counter()
    floor(lat, lon, tiles)
    floor_seconds = time.perf_counter() - start
    start = time.perf_counter()
    result = pair_points_arrays(lat, lon, tiles, patch_size=96, block_km=2.0,
                                fractions=fractions, seed=0)
    seconds = time.perf_counter() - start
    print(json.dumps({
        "benchmark": "pairing",
        "points": args.points,
        "tiles": args.tiles,
        "zones": int(tiles["crs"].nunique()),
        "paired": int((result.tile >= 0).sum()),
        "seconds": round(seconds, 3),
        "floor_seconds": round(floor_seconds, 3),
        "ratio": round(seconds / floor_seconds, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }))


if __name__ == "__main__":
    main()
