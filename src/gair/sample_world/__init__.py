"""The sample world: a generated, deterministic stand-in for Global Streetscapes + Sentinel-2.

A hidden truth (land cover, roads, affluence and urbanity fields) drives both what the
satellite sees and what the street views show, so that an RS patch and the street views
inside it share information a model can learn to align, and evaluation has labels.
"""

from gair.sample_world.config import SampleWorldConfig, Site
from gair.sample_world.landscape import LandCover
from gair.sample_world.world import (
    SampleWorld,
    Tile,
    build_world,
    write_sentinel2,
    write_streetscapes,
    write_truth,
)

__all__ = [
    "LandCover",
    "SampleWorld",
    "SampleWorldConfig",
    "Site",
    "Tile",
    "build_world",
    "write_sentinel2",
    "write_streetscapes",
    "write_truth",
]
