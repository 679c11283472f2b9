"""Nodes of the ``sample_world`` pipeline.

Each writer renders the world's files one at a time into a staging folder, which the
catalog's ``DirectoryDataset`` moves into place, so the world never sits in memory as
pixels.
"""

import logging
from functools import partial
from pathlib import Path

from gair import sample_world
from gair.io.directories import stage_directory
from gair.sample_world import SampleWorld, SampleWorldConfig, build_world

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


def write_sentinel2_tiles(world: SampleWorld, staging_dir: str) -> Path:
    """The Sentinel-2 L2A tiles (GeoTIFF, 12 bands, DN with the BOA offset)."""
    return stage_directory(staging_dir, "sentinel2", partial(sample_world.write_sentinel2, world))


def write_streetscapes(world: SampleWorld, staging_dir: str) -> Path:
    """The Global Streetscapes tables and JPEG images."""
    return stage_directory(staging_dir, "streetscapes",
                           partial(sample_world.write_streetscapes, world))


def write_truth(world: SampleWorld, staging_dir: str) -> Path:
    """The hidden truth for evaluation (not an input of pretraining)."""
    return stage_directory(staging_dir, "truth", partial(sample_world.write_truth, world))
