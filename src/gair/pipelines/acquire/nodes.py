"""Nodes of the ``acquire`` pipeline: street views in, Sentinel-2 tiles on disk, provenance,
rejects and counts out."""

import logging

import geopandas as gpd
import pandas as pd

from gair.acquire import acquire_sentinel2
from gair.parameters import AcquireParams

logger = logging.getLogger(__name__)


def acquire_tiles(street_views: gpd.GeoDataFrame, params: AcquireParams
                  ) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Fetch a tile per window of street views into ``params.output_dir``; return the
    tiles' provenance, the views no scene could serve (with reasons) and the counts."""
    result = acquire_sentinel2(pd.DataFrame(street_views.drop(columns="geometry",
                                                               errors="ignore")),
                               **params.model_dump())
    report = result.report()
    logger.info("Acquire: %s", report)
    return result.tiles, result.rejects, report
