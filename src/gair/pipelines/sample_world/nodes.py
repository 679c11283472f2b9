"""Nodes of the ``sample_world`` pipeline.

Each writer renders its files while the catalog's ``DirectoryDataset`` saves it, so the
world never sits in memory as pixels.
"""

import logging

from gair.sample_world import (
    SampleWorld,
    SampleWorldConfig,
    Sentinel2Writer,
    StreetscapesWriter,
    TruthWriter,
    build_world,
)

logger = logging.getLogger(__name__)


def build_sample_world(config: SampleWorldConfig) -> SampleWorld:
    """Lay out the world's tiles and street views from ``params:sample_world``."""
    world = build_world(config)
    views = world.street_views
    logger.info(
        "Sample world: %d tiles in %d sites, %d street views (%d outside every tile)",
        len(world.tiles), len(config.sites), len(views), int((~views["inside_tile"]).sum()),
    )
    return world


def write_sentinel2_tiles(world: SampleWorld) -> Sentinel2Writer:
    """The Sentinel-2 L2A tiles (GeoTIFF, 12 bands, DN with the BOA offset)."""
    return Sentinel2Writer(world)


def write_streetscapes(world: SampleWorld) -> StreetscapesWriter:
    """The Global Streetscapes tables and JPEG images."""
    return StreetscapesWriter(world)


def write_truth(world: SampleWorld) -> TruthWriter:
    """The hidden truth for evaluation (not an input of pretraining)."""
    return TruthWriter(world)
