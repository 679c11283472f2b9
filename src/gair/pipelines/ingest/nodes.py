"""Nodes of the ``ingest`` pipeline: raw folders in, validated tables and rejects out."""

import logging
from pathlib import Path

import geopandas as gpd
import pandas as pd

from gair.io.sentinel2 import read_tile_index
from gair.io.streetscapes import read_street_views
from gair.parameters import Sentinel2Params, StreetscapesParams

logger = logging.getLogger(__name__)


def ingest_street_views(
    streetscapes_dir: Path, params: StreetscapesParams
) -> tuple[gpd.GeoDataFrame, pd.DataFrame, dict]:
    """Validated street-view points (EPSG:4326), their rejects and counts."""
    table = read_street_views(streetscapes_dir, **params.model_dump())
    report = table.report()
    logger.info("Street views: %s", report)
    return table.points, table.rejects, report


def index_sentinel2_tiles(
    sentinel2_dir: Path, params: Sentinel2Params
) -> tuple[gpd.GeoDataFrame, pd.DataFrame, dict]:
    """Tile index (footprints in EPSG:4326), rejected files and counts."""
    index = read_tile_index(sentinel2_dir, **params.model_dump())
    report = index.report()
    logger.info("Sentinel-2 tiles: %s", report)
    return index.tiles, index.rejects, report


def report_ingest(
    street_view_report: dict, tile_report: dict,
    street_view_rejects: pd.DataFrame, tile_rejects: pd.DataFrame,
) -> tuple[dict, pd.DataFrame]:
    """One report (accepted + rejected = read, per input) and one rejects table."""
    return (
        {"street_views": street_view_report, "sentinel2_tiles": tile_report},
        pd.concat([street_view_rejects, tile_rejects], ignore_index=True),
    )
