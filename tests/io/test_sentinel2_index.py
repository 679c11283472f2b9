"""Indexing Sentinel-2 tiles: stacks in any CRS, SAFE granules, and every bad file rejected."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely
from affine import Affine
from pyproj import CRS
from rasterio.windows import Window

from gair.io.l2a import GAIR_BANDS, L2A_BANDS
from gair.io.rejects import InputConfigurationError
from gair.io.sentinel2 import read_tile_index, read_window, to_reflectance, write_l2a_geotiff

UTM_32N = CRS.from_epsg(32632)


def _stack(path: Path, value: int = 3000, size: int = 64, crs=UTM_32N, baseline="05.09"):
    dn = np.full((12, size, size), value, dtype=np.uint16)
    write_l2a_geotiff(path, dn, crs, Affine(10, 0, 500000, 0, -10, 5400000), baseline,
                      block_size=32)
    return dn


@pytest.fixture
def tiles_dir(small_world, tmp_path):
    target = tmp_path / "sentinel2"
    shutil.copytree(small_world["sentinel2"], target)
    return target


def test_generated_tiles_are_indexed(tiles_dir):
    index = read_tile_index(tiles_dir)
    assert index.report() == {"read": 3, "accepted": 3, "rejected": 0, "rejected_by_reason": {}}
    tiles = index.tiles
    assert tiles.crs.to_epsg() == 4326
    assert set(tiles["offset_source"]) == {"file tags"} and set(tiles["boa_add_offset"]) == {-1000}
    for tile in tiles.itertuples():
        band_map = json.loads(tile.band_map)
        assert list(band_map) == list(GAIR_BANDS)
        assert [band_map[b][1] for b in GAIR_BANDS] == [L2A_BANDS.index(b) + 1 for b in GAIR_BANDS]
        with rasterio.open(tiles_dir / tile.path) as src:
            assert tuple(tile.transform) == tuple(src.transform)[:6]
            assert CRS.from_user_input(tile.crs) == src.crs
            nodata = (src.read() == 0).all(axis=0).mean()
        assert tile.valid_fraction == pytest.approx(1 - nodata)
        assert tile.geometry.is_valid and tile.geometry.area > 0


def test_band_order_comes_from_configuration(tmp_path):
    dn = _stack(tmp_path / "t.tif")
    dn[L2A_BANDS.index("B02")] = 1234
    write_l2a_geotiff(tmp_path / "t.tif", dn, UTM_32N, Affine(10, 0, 500000, 0, -10, 5400000),
                      "05.09", block_size=32)
    reversed_order = tuple(reversed(L2A_BANDS))
    tile = read_tile_index(tmp_path, band_order=reversed_order).tiles.iloc[0]
    assert json.loads(tile["band_map"])["B02"][1] == reversed_order.index("B02") + 1
    window = read_window(tmp_path, tile.to_dict(), Window(0, 0, 4, 4), ["B11"])
    assert (window == 1234).all(), "B02 sits where the reversed order puts B11"


@pytest.mark.parametrize(
    ("requested", "tagged", "name", "expected", "source"),
    [("auto", "04.00", "t.tif", -1000, "file tags"),
     ("auto", None, "S2A_MSIL2A_20190101T000000_N0211_R001_T32TNT.tif", 0, "product name"),
     ("auto", None, "plain.tif", -1000, "configuration default"),
     ("03.00", "05.09", "t.tif", 0, "configuration")],
)
def test_boa_offset_by_processing_baseline(tmp_path, requested, tagged, name, expected, source):
    # A plain stack with no metadata at all, then the baseline tag where the case has one.
    with rasterio.open(tmp_path / name, "w", driver="GTiff", width=16, height=16, count=12,
                       dtype="uint16", crs=UTM_32N, nodata=0,
                       transform=Affine(10, 0, 500000, 0, -10, 5400000)) as dst:
        dst.write(np.full((12, 16, 16), 3000, dtype=np.uint16))
        if tagged:
            dst.update_tags(PROCESSING_BASELINE=tagged)
    tile = read_tile_index(tmp_path, processing_baseline=requested).tiles.iloc[0]
    assert (tile["boa_add_offset"], tile["offset_source"]) == (expected, source)


def test_reflectance_masks_nodata_before_the_offset():
    dn = np.array([[[0, 1000, 900, 3000]]] * 2, dtype=np.uint16)
    dn[1, 0, 3] = 0
    reflectance, valid = to_reflectance(dn, -1000)
    assert valid.tolist() == [[False, True, True, False]]
    assert reflectance[0].tolist() == [[0, 0, 0, 0]]


def _rejected(directory: Path, **kwargs) -> dict:
    index = read_tile_index(directory, **kwargs)
    assert index.report()["read"] == index.report()["accepted"] + len(index.rejects)
    return dict(zip(index.rejects["item"], index.rejects["reason"], strict=True))


def test_every_bad_tile_is_rejected_with_its_reason(tmp_path):
    _stack(tmp_path / "good.tif")
    # Opens, then fails on read: the tile data is garbled, the header is intact.
    corrupt = tmp_path / "corrupt.tif"
    rng = np.random.default_rng(0)
    dn = rng.integers(1, 60000, (12, 64, 64)).astype(np.uint16)
    write_l2a_geotiff(corrupt, dn, UTM_32N, Affine(10, 0, 500000, 0, -10, 5400000), "05.09",
                      block_size=32)
    data = bytearray(corrupt.read_bytes())
    data[200 : len(data) // 2] = bytes((b * 7 + 13) % 256 for b in data[200 : len(data) // 2])
    corrupt.write_bytes(bytes(data))
    with rasterio.open(corrupt) as src:
        assert src.count == 12  # it does open
    with rasterio.open(tmp_path / "nocrs.tif", "w", driver="GTiff", width=16, height=16,
                       count=12, dtype="uint16", transform=Affine(10, 0, 0, 0, -10, 0)) as dst:
        dst.write(np.full((12, 16, 16), 2000, dtype=np.uint16))
    with rasterio.open(tmp_path / "rgb.tif", "w", driver="GTiff", width=16, height=16, count=3,
                       dtype="uint16", crs=UTM_32N, transform=Affine(10, 0, 0, 0, -10, 0)) as dst:
        dst.write(np.full((3, 16, 16), 2000, dtype=np.uint16))
    _stack(tmp_path / "empty.tif", value=0)
    _stack(tmp_path / "coarse.tif")
    with rasterio.open(tmp_path / "coarse.tif", "r+") as dst:
        dst.transform = Affine(20, 0, 500000, 0, -20, 5400000)
    (tmp_path / "text.tif").write_text("not a raster")
    reasons = _rejected(tmp_path)
    assert reasons == {
        "corrupt.tif": "read failed", "nocrs.tif": "no CRS", "rgb.tif": "wrong band count",
        "empty.tif": "all nodata", "coarse.tif": "wrong pixel size", "text.tif": "unreadable file",
    }
    index = read_tile_index(tmp_path)
    assert index.tiles["tile_id"].tolist() == ["good.tif"]
    detail = index.rejects.set_index("item").loc["rgb.tif", "detail"]
    assert "3 bands, expected 12" in detail


def test_a_header_declaring_a_huge_tile_is_rejected_before_reading(tmp_path):
    """A sparse GeoTIFF of a few KB declaring 200000 x 200000 px: rejected by its declared
    size (configurable), not read into gigabytes of memory."""
    with rasterio.open(tmp_path / "huge.tif", "w", driver="GTiff", width=200_000,
                       height=200_000, count=12, dtype="uint16", crs=UTM_32N,
                       transform=Affine(10, 0, 500000, 0, -10, 5400000), tiled=True,
                       sparse_ok=True, nodata=0) as dst:
        dst.write(np.full((12, 16, 16), 2000, np.uint16), window=Window(0, 0, 16, 16))
    assert (tmp_path / "huge.tif").stat().st_size < 10 << 20
    _stack(tmp_path / "small.tif")
    index = read_tile_index(tmp_path)
    assert index.tiles["tile_id"].tolist() == ["small.tif"]
    reject = index.rejects.set_index("item").loc["huge.tif"]
    assert reject["reason"] == "tile too large"
    assert "200000 x 200000" in reject["detail"]
    assert _rejected(tmp_path, max_tile_pixels=64 * 64 - 1) == {
        "huge.tif": "tile too large", "small.tif": "tile too large"}


def test_linked_folders_are_read_once_and_bad_links_rejected(tmp_path):
    """Tiles in a linked sub-folder are read; a link loop ends; a second path to the same
    file and a link to nothing are rejected with their reasons."""
    real = tmp_path / "elsewhere"
    real.mkdir()
    _stack(real / "a.tif")
    root = tmp_path / "tiles"
    root.mkdir()
    _stack(root / "b.tif")
    (root / "linked").symlink_to(real, target_is_directory=True)
    (real / "loop").symlink_to(root, target_is_directory=True)
    (root / "again.tif").symlink_to(root / "b.tif")
    (root / "gone.tif").symlink_to(tmp_path / "missing.tif")
    index = read_tile_index(root)
    assert sorted(index.tiles["tile_id"]) == ["b.tif", "linked/a.tif"]
    assert _rejected(root) == {"again.tif": "same file as another tile",
                               "gone.tif": "broken link"}


def test_no_tiles_is_one_clear_message(tmp_path):
    with pytest.raises(InputConfigurationError, match=rf"{tmp_path}: no Sentinel-2 tiles found"):
        read_tile_index(tmp_path)
    with pytest.raises(InputConfigurationError, match="Sentinel-2 folder not found"):
        read_tile_index(tmp_path / "absent")
    _stack(tmp_path / "t.tif")
    with pytest.raises(InputConfigurationError, match="band_order lacks GAIR band"):
        read_tile_index(tmp_path, band_order=("B01", "B02"))


def _jp2(path: Path, data: np.ndarray, resolution: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="JP2OpenJPEG", width=data.shape[1], height=data.shape[0],
                       count=1, dtype="uint16", crs=CRS.from_epsg(32734), QUALITY=100,
                       REVERSIBLE="YES",
                       transform=Affine(resolution, 0, 300000, 0, -resolution, 7400000)) as dst:
        dst.write(data[None])


def test_safe_granule_bands_are_brought_onto_one_10m_grid(tmp_path):
    product = "S2B_MSIL2A_20230823T095559_N0509_R122_T34HBH_20230823T124759.SAFE"
    granule = tmp_path / product / "GRANULE" / "L2A_T34HBH_A033753_20230823T095553" / "IMG_DATA"
    stem = "T34HBH_20230823T095559"
    for band in GAIR_BANDS:
        if band in ("B02", "B03", "B04", "B08"):
            data = np.full((32, 32), 2000 + GAIR_BANDS.index(band), dtype=np.uint16)
            _jp2(granule / "R10m" / f"{stem}_{band}_10m.jp2", data, 10)
        else:
            data = (np.arange(256, dtype=np.uint16).reshape(16, 16) + 3000)
            _jp2(granule / "R20m" / f"{stem}_{band}_20m.jp2", data, 20)
    _jp2(granule / "R20m" / f"{stem}_SCL_20m.jp2", np.ones((16, 16), np.uint16), 20)
    index = read_tile_index(tmp_path)
    assert index.report()["accepted"] == 1
    tile = index.tiles.iloc[0]
    assert tile["format"] == "SAFE" and tile["crs"] == "EPSG:32734"
    assert (tile["width"], tile["height"]) == (32, 32)
    assert (tile["processing_baseline"], tile["boa_add_offset"]) == ("05.09", -1000)
    assert tile["offset_source"] == "product name"
    window = read_window(tmp_path, tile.to_dict(), Window(2, 4, 6, 6))
    b05 = window[GAIR_BANDS.index("B05")]
    # 10 m pixel (r, c) lies in 20 m pixel (r // 2, c // 2).
    expected = np.array([[3000 + (r // 2) * 16 + c // 2 for c in range(2, 8)] for r in range(4, 10)])
    assert (b05 == expected).all()
    assert (window[GAIR_BANDS.index("B02")] == 2000).all()
    (granule / "R20m" / f"{stem}_B11_20m.jp2").unlink()
    assert _rejected(tmp_path) == {
        f"{product}/GRANULE/L2A_T34HBH_A033753_20230823T095553": "SAFE granule missing bands"}


@pytest.mark.realdata
def test_real_chips_index_with_the_right_footprints(realdata):
    chips = realdata / "sentinel2_l2a_chips"
    index = read_tile_index(chips, processing_baseline="03.00")  # no offset: no offset check
    assert index.report()["accepted"] == 23
    tiles = index.tiles.set_index("tile_id")
    assert (tiles["source_crs"] == "").all(), "10 m UTM chips are read as they are"
    assert {c.split(":")[0] for c in tiles["crs"]} == {"EPSG"}
    assert any(c.startswith("EPSG:327") for c in tiles["crs"])
    centres = pd.read_csv(chips / "index.csv")
    for centre in centres.itertuples():
        footprint = tiles.loc[centre.fn, "geometry"]
        assert footprint.contains(shapely.Point(centre.lon, centre.lat)), centre.fn
        others = tiles.drop(index=centre.fn)
        assert not others.contains(shapely.Point(centre.lon, centre.lat)).any()


@pytest.mark.realdata
def test_offset_check_separates_the_real_chips_by_their_data(realdata):
    """The chips mix baselines and say nothing about it. Stating the 04.00+ offset for all
    of them, the check keeps the chips whose blue band carries the +1000 (almost no valid
    pixel below 1000) and rejects the others, with a wide gap between the two groups."""
    chips = realdata / "sentinel2_l2a_chips"
    checked = read_tile_index(chips, processing_baseline="05.09")
    unchecked = read_tile_index(chips, processing_baseline="05.09", offset_check="warn")
    assert checked.report()["read"] == 23 and unchecked.report()["accepted"] == 23
    rejected = set(checked.rejects["item"])
    assert set(checked.rejects["reason"]) == {"BOA offset contradicts the data"}
    share = unchecked.tiles.set_index("tile_id")["blue_below_1000"]
    kept = share.drop(index=sorted(rejected))
    assert 0 < len(rejected) < 23
    assert kept.max() < 0.005 and share[sorted(rejected)].min() > 0.3
    assert set(checked.tiles["tile_id"]) == set(kept.index)
