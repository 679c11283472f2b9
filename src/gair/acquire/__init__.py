"""Acquire Sentinel-2 L2A tiles for street views from a STAC catalogue (Earth Search,
Planetary Computer): search, choose a scene per window, read only its windows over HTTP,
mask clouds, write tiles that ingest reads."""

from gair.acquire.acquire import AcquireResult, TileWindow, acquire_sentinel2, tile_windows
from gair.acquire.stac import PROVIDERS, Provider, Scene, decide_offset, scene_from_item

__all__ = ["PROVIDERS", "AcquireResult", "Provider", "Scene", "TileWindow", "acquire_sentinel2",
           "decide_offset", "scene_from_item", "tile_windows"]
