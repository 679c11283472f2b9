"""Embedding throughput of the library API on this machine: N locations, and M RS patches
cut around random points over the sample world's tiles (tile lookup, patch read, encoder,
NILI query). Needs a trained checkpoint (run `kedro run` first). Prints one JSON line.

Usage: .venv/bin/python benchmarks/bench_embed.py [--locations 100000] [--patches 1000]
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import geopandas as gpd
import numpy as np
import pandas as pd
import torch

import gair
from gair.embed import embed_locations, embed_rs_at_points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", default="data/06_models/gair.ckpt")
    parser.add_argument("--tiles", default="data/02_intermediate/sentinel2_tiles.parquet")
    parser.add_argument("--sentinel2-dir", default="data/01_raw/sample/sentinel2")
    parser.add_argument("--locations", type=int, default=100_000)
    parser.add_argument("--patches", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    model = gair.load_model(args.checkpoint)
    latlon = np.column_stack([rng.uniform(-60, 70, args.locations),
                              rng.uniform(-180, 180, args.locations)])
    start = time.perf_counter()
    embed_locations(model, latlon)
    locations_s = time.perf_counter() - start

    tiles = gpd.read_parquet(args.tiles)
    bounds = tiles.geometry.bounds.to_numpy()  # points inside the tiles' footprints
    pick = rng.integers(0, len(tiles), args.patches)
    lon = rng.uniform(bounds[pick, 0], bounds[pick, 2])
    lat = rng.uniform(bounds[pick, 1], bounds[pick, 3])
    start = time.perf_counter()
    result = embed_rs_at_points(model, pd.DataFrame({"lat": lat, "lon": lon}),
                                args.sentinel2_dir, tiles, batch_size=args.batch_size)
    patches_s = time.perf_counter() - start
    print(json.dumps({
        "benchmark": "embed", "device": "cpu", "threads": torch.get_num_threads(),
        "locations": args.locations, "locations_s": round(locations_s, 2),
        "locations_per_s": round(args.locations / locations_s),
        "rs_points": args.patches, "rs_points_inside_tiles": int(result["tile_id"].notna().sum()),
        "rs_points_s": round(patches_s, 2), "rs_points_per_s": round(args.patches / patches_s, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }))


if __name__ == "__main__":
    main()
