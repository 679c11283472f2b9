"""Nodes of the ``embed`` pipeline: the library's embedding API on a points table."""

from __future__ import annotations

import logging
from pathlib import Path

import geopandas as gpd
import pandas as pd

from gair.parameters import EmbedParams

logger = logging.getLogger(__name__)


def embed_points(checkpoint: Path, points: pd.DataFrame, sentinel2_dir: Path,
                 tiles: gpd.GeoDataFrame, params: EmbedParams) -> gpd.GeoDataFrame:
    """Location, global RS and NILI-queried RS embeddings at every (lat, lon) of
    ``points`` (other columns are kept; points outside every tile get no RS embedding)."""
    from gair.embed import embed_rs_at_points, load_model

    model = load_model(checkpoint, params.device)
    embedded = embed_rs_at_points(model, points, sentinel2_dir, tiles, lat=params.lat_column,
                                  lon=params.lon_column, batch_size=params.batch_size)
    kept = pd.DataFrame(points).drop(columns=[c for c in ("geometry",) if c in points.columns])
    kept = kept.drop(columns=[c for c in kept.columns if c in embedded.columns])
    result = gpd.GeoDataFrame(pd.concat([kept.reset_index(drop=True), embedded], axis=1),
                              geometry="geometry", crs=embedded.crs)
    logger.info("Embedded %d points (%d inside a tile)", len(result),
                int(result["tile_id"].notna().sum()))
    return result
