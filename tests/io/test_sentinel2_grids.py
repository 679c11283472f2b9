"""Tiles in a geographic CRS (GAIR's own format) read through a warp onto the local UTM grid,
Earth Engine exports whose offset tags are wrong, and the data check on the BOA offset."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import rasterio
from affine import Affine
from pyproj import CRS, Transformer
from rasterio.windows import Window

from gair.io.l2a import L2A_BANDS
from gair.io.sentinel2 import read_tile_index, read_window, write_l2a_geotiff

GAIR_DEGREES = 8.983152841195215e-05
"""GAIR's tiles: EPSG:4326 at this many degrees per pixel (10 m at the equator)."""

EARTH_ENGINE_TAGS = {
    # As an Earth Engine export of COPERNICUS/S2_SR_HARMONIZED carries them (the official
    # GAIR example tiles): a 05.xx baseline and -1000 offsets, for data already harmonised.
    "LICENSE": "https://developers.google.com/earth-engine/datasets/catalog/"
               "COPERNICUS_S2_SR_HARMONIZED#terms-of-use",
    "PROCESSING_BASELINE": "05.11",
    "BOA_ADD_OFFSET_B2": "-1000", "BOA_ADD_OFFSET_B3": "-1000",
    "GRANULE_ID": "L2A_T16TGN_A039005_20240824T163435",
    "PRODUCT_ID": "S2B_MSIL2A_20240824T162829_N0511_R083_T16TGN_20240824T204911",
    "system-index": "20240824T162829_20240824T163435_T16TGN",
    "system-time_start": "1724517694590",
}


def _geographic_tile(path, lat0: float, lon0: float, values: np.ndarray,
                     degrees: float = GAIR_DEGREES, tags: dict | None = None,
                     baseline: str = "03.00") -> Affine:
    """A 12-band EPSG:4326 tile whose north-west corner is (lat0, lon0); every band holds
    ``values`` (rows x cols). Written as Earth Engine writes them: no band names, no
    project tags beyond ``tags``."""
    rows, cols = values.shape
    transform = Affine(degrees, 0, lon0, 0, -degrees, lat0)
    with rasterio.open(path, "w", driver="GTiff", width=cols, height=rows, count=12,
                       dtype="uint16", crs="EPSG:4326", transform=transform, nodata=0) as dst:
        dst.write(np.broadcast_to(values.astype(np.uint16), (12, rows, cols)))
        dst.update_tags(**({"PROCESSING_BASELINE": baseline} | (tags or {})))
    return transform


def _utm_epsg(lat: float, lon: float) -> int:
    return (32600 if lat >= 0 else 32700) + int((lon + 180) // 6) + 1


@pytest.mark.parametrize(("lat0", "lon0"), [(0.004, 30.001), (60.004, 10.501), (-33.9, 18.4)])
def test_geographic_tile_is_read_on_the_local_utm_grid(tmp_path, lat0, lon0):
    values = np.full((50, 60), 1500)
    source = _geographic_tile(tmp_path / "gair.tif", lat0, lon0, values)
    tile = read_tile_index(tmp_path).tiles.iloc[0]
    assert tile["crs"] == f"EPSG:{_utm_epsg(lat0, lon0)}"
    assert (tile["source_crs"], tile["warp_resampling"]) == ("EPSG:4326", "nearest")
    a, b, c, d, e, f = tile["transform"]
    assert (a, b, d, e) == (10, 0, 0, -10) and c % 10 == 0 and f % 10 == 0
    # The warped grid covers the whole source: every source corner lies inside it.
    to_utm = Transformer.from_crs(4326, tile["crs"], always_xy=True)
    for col, row in ((0, 0), (60, 0), (0, 50), (60, 50)):
        x, y = to_utm.transform(*(source @ (col, row)))
        assert c <= x <= c + 10 * tile["width"] and f - 10 * tile["height"] <= y <= f
    # 50 x 60 source pixels of 10 m x 10 cos(lat) m; the rest of the UTM box is nodata.
    covered = 50 * 60 * np.cos(np.radians(lat0)) / (tile["width"] * tile["height"])
    assert tile["valid_fraction"] == pytest.approx(covered, rel=0.08)
    assert tile.geometry.contains(tile.geometry.centroid)


def test_warp_resampling_is_configurable_and_recorded(tmp_path):
    _geographic_tile(tmp_path / "gair.tif", 48.1, 11.5, np.full((40, 40), 1500))
    tile = read_tile_index(tmp_path, warp_resampling="bilinear").tiles.iloc[0]
    assert tile["warp_resampling"] == "bilinear"


def test_pixel_size_is_judged_on_the_ground_and_reported_in_the_file_unit(tmp_path):
    _geographic_tile(tmp_path / "coarse.tif", 0.1, 30.0, np.full((20, 20), 1500),
                     degrees=0.0002)
    # 4326 at 60 N: 5 m x 10 m on the ground, fine; at 0.0001 degrees 5.6 x 11.1 m, too coarse.
    _geographic_tile(tmp_path / "north.tif", 60.0, 10.5, np.full((20, 20), 1500))
    _geographic_tile(tmp_path / "north_coarse.tif", 61.0, 10.5, np.full((20, 20), 1500),
                     degrees=0.0001)
    with rasterio.open(tmp_path / "utm20.tif", "w", driver="GTiff", width=16, height=16,
                       count=12, dtype="uint16", crs="EPSG:32632", nodata=0,
                       transform=Affine(20, 0, 500000, 0, -20, 5400000)) as dst:
        dst.write(np.full((12, 16, 16), 1500, dtype=np.uint16))
    index = read_tile_index(tmp_path)
    assert list(index.tiles["tile_id"]) == ["north.tif"]
    details = dict(zip(index.rejects["item"], index.rejects["detail"], strict=True))
    assert set(index.rejects["reason"]) == {"wrong pixel size"}
    assert details["coarse.tif"].startswith("0.0002 x 0.0002 degree (about 22.3 x 22.1 m on the "
                                            "ground")
    assert details["north_coarse.tif"].startswith("0.0001 x 0.0001 degree (about 5.4 x 11.1 m")
    assert details["utm20.tif"].startswith("20 x 20 m (about 20.0 x 20.0 m")


def test_earth_engine_harmonized_export_keeps_its_dark_pixels(tmp_path):
    """Harmonised data (dark water at DN 300) tagged 05.11 with BOA_ADD_OFFSET_Bx = -1000:
    the offset is not removed a second time, and the scene time is Earth Engine's."""
    values = np.full((40, 40), 1500)
    values[:20] = 300
    _geographic_tile(tmp_path / "ee.tif", 42.3, -83.0, values, tags=EARTH_ENGINE_TAGS,
                     baseline="05.11")
    tile = read_tile_index(tmp_path).tiles.iloc[0]
    assert (tile["processing_baseline"], tile["boa_add_offset"]) == ("05.11", 0)
    assert tile["offset_source"].startswith("Earth Engine S2_SR_HARMONIZED")
    assert tile["sensing_time"] == "2024-08-24T16:41:34.590000+00:00"
    dn = read_window(tmp_path, tile.to_dict(), Window(0, 0, tile["width"], tile["height"]))
    assert set(np.unique(dn)) == {0, 300, 1500}


@pytest.mark.parametrize("check", ["reject", "warn"])
def test_wrong_offset_is_caught_by_the_data_whatever_the_tags_say(tmp_path, caplog, check):
    """The same export with its LICENSE tag stripped: the tags then say -1000, and half its
    blue pixels would turn into nodata. The data check rejects it (or warns), naming it."""
    values = np.full((40, 40), 1500)
    values[:20] = 300
    tags = {k: v for k, v in EARTH_ENGINE_TAGS.items() if k != "LICENSE"}
    _geographic_tile(tmp_path / "stripped.tif", 42.3, -83.0, values, tags=tags,
                     baseline="05.11")
    with caplog.at_level(logging.WARNING, logger="gair.io.sentinel2"):
        index = read_tile_index(tmp_path, offset_check=check)
    assert "stripped.tif" in caplog.text
    assert "% of valid blue (B02) pixels are below 1000" in caplog.text
    if check == "reject":
        assert index.rejects["reason"].tolist() == ["BOA offset contradicts the data"]
        assert "processing baseline 05.11" in index.rejects["detail"].iloc[0]
    else:
        assert index.tiles["blue_below_1000"].iloc[0] == pytest.approx(0.5, abs=0.03)
        assert index.report()["rejected"] == 0


def test_offset_check_threshold(tmp_path):
    """A real scene with the offset has a few dark pixels below 1000: kept under the
    threshold, rejected over it."""
    dn = np.full((12, 40, 40), 2000, dtype=np.uint16)
    dn[:, 0, :40] = 900  # 2.5 % of pixels
    write_l2a_geotiff(tmp_path / "t.tif", dn, CRS.from_epsg(32632),
                      Affine(10, 0, 500000, 0, -10, 5400000), "05.09")
    assert read_tile_index(tmp_path).report()["accepted"] == 1
    assert read_tile_index(tmp_path, max_share_below_offset=0.02).report()["rejected"] == 1


@pytest.mark.parametrize(
    ("tags", "name", "expected"),
    [({"SENSING_TIME": "2023-06-01T10:20:31.024000Z"}, "t.tif", "2023-06-01T10:20:31.024000+00:00"),
     ({"DATATAKE_SENSING_DATE": "2024-07-09"}, "t.tif", "2024-07-09T00:00:00+00:00"),
     ({}, "S2A_MSIL2A_20190101T103421_N0211_R001_T32TNT_20190101T120000.tif",
      "2019-01-01T10:34:21+00:00"),
     ({}, "t.tif", None)],
)
def test_sensing_time(tmp_path, tags, name, expected):
    dn = np.full((12, 16, 16), 2000, dtype=np.uint16)
    write_l2a_geotiff(tmp_path / name, dn, CRS.from_epsg(32632),
                      Affine(10, 0, 500000, 0, -10, 5400000), "05.09", tags=tags)
    assert read_tile_index(tmp_path).tiles["sensing_time"].iloc[0] == expected


def test_band_order_of_an_earth_engine_export(tmp_path):
    """Earth Engine names the bands B1 ... B12 (not B01): the order still comes from the
    configuration, which is L2A order for these exports."""
    _geographic_tile(tmp_path / "ee.tif", 42.3, -83.0, np.full((20, 20), 1500),
                     tags=EARTH_ENGINE_TAGS, baseline="05.11")
    tile = read_tile_index(tmp_path, band_order=L2A_BANDS).tiles.iloc[0]
    assert tile["band_map"] and tile["valid_fraction"] > 0.8


def test_embedding_reads_a_geographic_tile_on_the_grid_ingest_reads(tmp_path):
    """``open_stack`` (the embed CLI's ``rs-patches``) sees the warped grid, as ingest does."""
    from gair.io.sentinel2 import open_stack

    _geographic_tile(tmp_path / "gair.tif", 48.1, 11.5, np.full((40, 40), 1500))
    tile = read_tile_index(tmp_path).tiles.iloc[0]
    with open_stack(tmp_path / "gair.tif", L2A_BANDS, 10.0) as src:
        assert src.crs.to_string() == tile["crs"]
        assert (src.height, src.width) == (tile["height"], tile["width"])
        warped = src.read(2)
    ingested = read_window(tmp_path, tile.to_dict(), Window(0, 0, tile["width"], tile["height"]),
                           ["B02"])[0]
    assert (warped == ingested).all() and set(np.unique(warped)) == {0, 1500}
