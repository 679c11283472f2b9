"""Fake Sentinel-2 scenes made from the real L2A chips, served as Earth Search serves them.

Each scene is a real chip repeated 3 x 3 (7.68 km: files large enough that reading a
window is not reading the file) and re-anchored on a 60 m multiple (real Sentinel-2
tiles' 10, 20 and 60 m grids all start on one; the chips sit 5 m off it), one COG per band at
its native resolution (20 m bands: every 2nd pixel, 60 m: every 6th), with a synthetic SCL
(20 m) holding cloud blobs over chosen windows, and an item in Earth Search v1's schema.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely
from affine import Affine

from gair.acquire.stac import EARTH_SEARCH_ASSETS, SCL
from gair.geo.crs import transformer
from gair.geo.utm import utm_zone_for
from gair.io.l2a import L2A_BANDS, NATIVE_RESOLUTION_M
from tests.acquire.stac_server import COLLECTION, StacServer
from tests.conftest import REALDATA

TILE_PX = 48  # 480 m windows: 60 m pixels tile them exactly, 4-5 fit across a chip
EDGE_M = TILE_PX * 10
CHIPS = REALDATA / "sentinel2_l2a_chips"
REPEAT = 3  # chip copies across a scene
BLOCK = 64  # COG block edge: a window reads a few blocks, not the file
TITLES = {"B01": "Coastal aerosol (band 1) - 60m", "B02": "Blue (band 2) - 10m"}


@dataclass
class FakeScene:
    """A scene: bands (native resolution) and SCL, its grid and its item's facts."""

    item_id: str
    epsg: int
    left: float
    top: float
    size_m: float
    bands: dict[str, np.ndarray]
    scl: np.ndarray
    datetime: str
    cloud_cover: float
    baseline: str
    raster_offset: float
    folder: str = ""
    extra: dict = field(default_factory=dict)

    def value(self, band: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The band's pixel holding each ground position (nearest, as a tile reads it)."""
        res = 20 if band == SCL else NATIVE_RESOLUTION_M[band]
        data = self.scl if band == SCL else self.bands[band]
        col = np.floor((x - self.left) / res).astype(int)
        row = np.floor((self.top - y) / res).astype(int)
        return data[row, col]

    def windows_inside(self) -> list[tuple[int, int]]:
        """North-west corners (x0, y1) of the 480 m windows strictly inside the scene."""
        xs = range(math.ceil(self.left / EDGE_M + 1e-9) * EDGE_M,
                   int(self.left + self.size_m - EDGE_M) + 1, EDGE_M)
        ys = range(math.ceil((self.top - self.size_m) / EDGE_M + 1e-9) * EDGE_M + EDGE_M,
                   int(self.top) + 1, EDGE_M)
        return [(x, y) for y in sorted(ys, reverse=True) for x in xs
                if x > self.left and x + EDGE_M < self.left + self.size_m
                and y < self.top and y - EDGE_M > self.top - self.size_m]

    def footprint(self) -> shapely.Polygon:
        box = shapely.segmentize(shapely.box(self.left, self.top - self.size_m,
                                             self.left + self.size_m, self.top), 200)
        xs, ys = np.asarray(box.exterior.coords).T
        lon, lat = transformer(f"EPSG:{self.epsg}", "EPSG:4326").transform(xs, ys)
        return shapely.Polygon(np.column_stack([lon, lat]))

    def cloud(self, x0: float, y1: float, width_m: float, height_m: float, cls: int) -> None:
        """Set SCL class ``cls`` over a rectangle (north-west corner x0, y1)."""
        c0, r0 = int((x0 - self.left) // 20), int((self.top - y1) // 20)
        self.scl[r0:r0 + int(height_m // 20), c0:c0 + int(width_m // 20)] = cls

    def write(self, root: Path) -> None:
        zone, north = self.epsg % 100, self.epsg < 32700
        when = pd.Timestamp(self.datetime)
        self.folder = (f"sentinel-cogs/sentinel-s2-l2a-cogs/{zone}/{'N' if north else 'M'}/AA/"
                       f"{when.year}/{when.month}/{self.item_id}")
        folder = root / self.folder
        folder.mkdir(parents=True, exist_ok=True)
        for band, data in [*self.bands.items(), (SCL, self.scl)]:
            res = 20 if band == SCL else NATIVE_RESOLUTION_M[band]
            with rasterio.open(
                folder / f"{band}.tif", "w", driver="COG", width=data.shape[1],
                height=data.shape[0], count=1, dtype=data.dtype, crs=f"EPSG:{self.epsg}",
                transform=Affine(res, 0, self.left, 0, -res, self.top), nodata=0,
                compress="DEFLATE", blocksize=BLOCK,
            ) as dst:
                dst.write(data, 1)

    def item(self, base_url: str) -> dict:
        """The scene's STAC item as Earth Search v1 writes it (sentinel-2-l2a)."""
        zone = self.epsg % 100
        footprint = self.footprint()

        def asset(band: str) -> dict:
            res = 20 if band == SCL else NATIVE_RESOLUTION_M[band]
            shape_px = (self.scl if band == SCL else self.bands[band]).shape
            raster = {"nodata": 0, "data_type": "uint8" if band == SCL else "uint16",
                      "spatial_resolution": res}
            if band != SCL:
                raster |= {"bits_per_sample": 15, "scale": 0.0001, "offset": self.raster_offset}
            return {
                "href": f"{base_url}/{self.folder}/{band}.tif",
                "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                "title": TITLES.get(band, band), "gsd": res, "proj:shape": list(shape_px),
                "proj:transform": [res, 0, self.left, 0, -res, self.top],
                "raster:bands": [raster], "roles": ["data", "reflectance"],
            }

        when = pd.Timestamp(self.datetime)
        properties = {
            "created": self.datetime, "updated": self.datetime, "platform": "sentinel-2a",
            "constellation": "sentinel-2", "instruments": ["msi"],
            "eo:cloud_cover": self.cloud_cover, "proj:epsg": self.epsg,
            "mgrs:utm_zone": zone, "mgrs:latitude_band": "N", "mgrs:grid_square": "AA",
            "grid:code": f"MGRS-{zone}NAA", "s2:product_type": "S2MSI2A",
            "s2:processing_baseline": self.baseline,
            "s2:product_uri": f"S2A_MSIL2A_{when:%Y%m%dT%H%M%S}_N{self.baseline.replace('.', '')}"
                              f"_R000_T{zone}NAA_{when:%Y%m%dT%H%M%S}.SAFE",
            "datetime": self.datetime, "s2:sequence": "0",
            "earthsearch:s3_path": f"s3://{self.folder}",
            "earthsearch:boa_offset_applied": False,
            "processing:software": {"sentinel2-to-stac": "0.1.0"},
        } | self.extra
        return {
            "type": "Feature", "stac_version": "1.0.0", "id": self.item_id,
            "stac_extensions": [
                "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
                "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
                "https://stac-extensions.github.io/raster/v1.1.0/schema.json"],
            "collection": COLLECTION, "properties": properties,
            "geometry": shapely.geometry.mapping(footprint), "bbox": list(footprint.bounds),
            "assets": {EARTH_SEARCH_ASSETS[b]: asset(b) for b in (*L2A_BANDS, SCL)},
            "links": [{"rel": "collection", "href": f"{base_url}/stac/collections/{COLLECTION}"}],
        }


def scene_from_chip(chip: Path, item_id: str, datetime: str, cloud_cover: float,
                    baseline: str, raster_offset: float, add: int = 0) -> FakeScene:
    with rasterio.open(chip) as src:
        stack, transform, epsg = src.read(), src.transform, src.crs.to_epsg()
    left, top = round(transform.c / 60) * 60, round(transform.f / 60) * 60
    stack = np.tile(stack, (1, REPEAT, REPEAT))
    stack = np.where(stack > 0, stack.astype(np.int32) + add, 0).astype(np.uint16)
    step = {10: 1, 20: 2, 60: 6}
    bands = {b: np.ascontiguousarray(stack[i][::step[NATIVE_RESOLUTION_M[b]],
                                              ::step[NATIVE_RESOLUTION_M[b]]])
             for i, b in enumerate(L2A_BANDS)}
    scl = np.full((stack.shape[1] // 2, stack.shape[2] // 2), 4, dtype=np.uint8)  # vegetation
    return FakeScene(item_id, epsg, left, top, stack.shape[1] * 10.0, bands, scl, datetime,
                     cloud_cover, baseline, raster_offset)


def in_own_zone(chip: Path) -> bool:
    """A chip in the UTM zone of its own centre (acquire's windows use that zone)."""
    with rasterio.open(chip) as src:
        x, y = (src.bounds.left + src.bounds.right) / 2, (src.bounds.bottom + src.bounds.top) / 2
        lon, lat = transformer(src.crs.to_string(), "EPSG:4326").transform(x, y)
        zone, north = utm_zone_for(lat, lon)
        return src.crs.to_epsg() == (32600 if north else 32700) + zone


@dataclass
class World:
    """The scenes, the windows they were made for, and the street views."""

    root: Path
    scenes: dict[str, FakeScene]
    windows: dict[str, tuple[int, int, int]]  # name -> (epsg, x0, y1)
    views: gpd.GeoDataFrame
    expected_reason: dict[str, str]  # uuid -> reason for views that must be rejected

    def items(self, base_url: str) -> list[dict]:
        return [scene.item(base_url) for scene in self.scenes.values()]


def _view(uuid: str, epsg: int, x: float, y: float, when: str | None) -> dict:
    lon, lat = transformer(f"EPSG:{epsg}", "EPSG:4326").transform(x, y)
    return {"uuid": uuid, "lat": lat, "lon": lon,
            "datetime_utc": pd.Timestamp(when, tz="UTC") if when else pd.NaT,
            "image_path": f"img/1_50/{uuid}.jpeg"}


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> World:
    if not CHIPS.is_dir():
        pytest.skip(f"real Sentinel-2 chips not found at {CHIPS} (only present beside CI clones)")
    chips = [c for c in sorted(CHIPS.glob("*.tif")) if in_own_zone(c)]
    if len(chips) < 2:
        pytest.skip("fewer than two real chips lie in their own UTM zone")
    root = tmp_path_factory.mktemp("bucket")
    a1 = scene_from_chip(chips[0], "S2A_TEST1_20230610_0_L2A", "2023-06-10T10:20:31.024000Z",
                         5.0, "05.09", -0.1)
    a2 = scene_from_chip(chips[0], "S2B_TEST1_20230625_0_L2A", "2023-06-25T10:20:29.511000Z",
                         12.0, "05.09", -0.1, add=7)  # other pixels: the tile shows which
    b = scene_from_chip(chips[1], "S2A_TEST2_20200714_0_L2A", "2020-07-14T19:21:57.558000Z",
                        3.0, "02.14", 0.0)
    inner = a1.windows_inside()
    assert len(inner) >= 5, f"{chips[0].name}: only {len(inner)} windows inside"
    w_clear, w_fallback, w_cloudy, w_shadow, w_old = inner[:5]
    e = EDGE_M
    a1.cloud(*w_fallback, e, e, 9)  # cloud high probability over the whole window
    a1.cloud(*w_cloudy, e, e, 8)
    a2.cloud(*w_cloudy, e, e, 9)  # cloudy in every scene
    a1.cloud(*w_clear, e / 2, e / 2, 10)  # a quarter under cirrus: kept, masked pixels 0
    a1.cloud(w_shadow[0], w_shadow[1], e, 40, 3)  # a strip of cloud shadow
    a2.cloud(w_clear[0], w_clear[1] - e / 2, e, e / 2, 8)  # A2 is never needed there
    inner_b = b.windows_inside()
    for scene in (a1, a2, b):
        scene.write(root)
    windows = {"clear": (a1.epsg, *w_clear), "fallback": (a1.epsg, *w_fallback),
               "cloudy": (a1.epsg, *w_cloudy), "shadow": (a1.epsg, *w_shadow),
               "old": (a1.epsg, *w_old), "b0": (b.epsg, *inner_b[0]),
               "b1": (b.epsg, *inner_b[-1])}
    june, july20 = "2023-06-15T08:00:00", "2020-07-20T12:00:00"
    rows, reasons = [], {}
    for name, (epsg, x0, y1) in windows.items():
        when = {"b0": july20, "b1": july20, "old": "2018-01-05T10:00:00"}.get(name, june)
        rows.append(_view(f"{name}-1", epsg, x0 + 0.3 * e, y1 - 0.4 * e, when))
        if name in ("clear", "fallback", "cloudy"):
            rows.append(_view(f"{name}-2", epsg, x0 + 0.8 * e, y1 - 0.9 * e,
                              None if name == "clear" else june))
    reasons |= {"cloudy-1": "every scene too cloudy", "cloudy-2": "every scene too cloudy",
                "old-1": "no scene"}
    lon, lat = -30.5, 0.5  # the Atlantic: no scene anywhere near
    rows.append({"uuid": "ocean-1", "lat": lat, "lon": lon,
                 "datetime_utc": pd.Timestamp(june, tz="UTC"), "image_path": "img/ocean-1.jpeg"})
    reasons["ocean-1"] = "no scene"
    frame = pd.DataFrame(rows)
    views = gpd.GeoDataFrame(frame, geometry=gpd.points_from_xy(frame["lon"], frame["lat"]),
                             crs="EPSG:4326")
    return World(root, {"a1": a1, "a2": a2, "b": b}, windows, views, reasons)


@pytest.fixture
def server(world):
    """A fresh server (new port: GDAL's per-URL caches start empty) over the world."""
    with StacServer(world.root) as running:
        running.items = world.items(running.url)
        yield running
