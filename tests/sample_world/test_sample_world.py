"""The generated sample world: deterministic, in the real formats, consistent with its truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import rasterio
from PIL import Image
from pydantic import ValidationError
from pyproj import CRS, Transformer

from gair.geo import utm_crs_for
from gair.io.directories import read_manifest
from gair.io.l2a import L2A_BANDS
from gair.io.streetscapes import (
    METADATA_COMMON_ATTRIBUTES_COLUMNS,
    PERCEPTION_ATTRIBUTES,
    STRING_COLUMNS,
    image_folder_name,
)
from gair.sample_world import LandCover
from tests.conftest import small_world_config, write_world


def _tiles(world):
    return sorted(world["sentinel2"].glob("*.tif"))


def _metadata(world) -> pd.DataFrame:
    return pd.read_csv(
        world["streetscapes"] / "metadata_common_attributes.csv",
        dtype={c: str for c in STRING_COLUMNS},
    )


def test_same_seed_same_bytes_and_other_seed_other_bytes(small_world, tmp_path):
    again = write_world(small_world_config(), tmp_path / "again")
    for name in ("sentinel2", "streetscapes", "truth"):
        first, second = read_manifest(small_world[name]), read_manifest(again[name])
        assert first["files"] == second["files"], name
        assert first["files"], name
    other = write_world(small_world_config(seed=8), tmp_path / "other")
    first, second = read_manifest(small_world["sentinel2"]), read_manifest(other["sentinel2"])
    assert first["files"].keys() == second["files"].keys()
    assert set(first["files"].values()).isdisjoint(second["files"].values())


def test_tiles_are_l2a_geotiffs_in_their_own_utm_zone(small_world):
    tiles = _tiles(small_world)
    assert len(tiles) == 3
    epsgs = set()
    for path in tiles:
        with rasterio.open(path) as src:
            assert src.driver == "GTiff"
            assert src.count == 12
            assert set(src.dtypes) == {"uint16"}
            assert src.nodata == 0
            assert src.descriptions == L2A_BANDS
            assert src.profile["tiled"] and src.block_shapes[0] == (64, 64)
            assert src.compression.name.lower() == "deflate"
            assert (src.transform.a, src.transform.e) == (10.0, -10.0)
            assert src.transform.b == src.transform.d == 0.0
            assert src.transform.c % 10 == 0 and src.transform.f % 10 == 0
            assert src.tags()["BOA_ADD_OFFSET"] == "-1000"
            # The tile's CRS is the UTM zone of its own centre.
            cx, cy = src.xy(src.height // 2, src.width // 2)
            lon, lat = Transformer.from_crs(src.crs, 4326, always_xy=True).transform(cx, cy)
            assert src.crs == CRS.from_user_input(utm_crs_for(lat, lon))
            epsgs.add(src.crs.to_epsg())
    assert len(epsgs) == 3
    assert any(32701 <= e <= 32760 for e in epsgs), "one tile must be in the southern hemisphere"


def test_digital_numbers_carry_the_offset_and_nodata_borders_only_where_asked(small_world):
    bordered = {"stuttgart", "sao_paulo"}
    for path in _tiles(small_world):
        with rasterio.open(path) as src:
            dn = src.read()
        nodata = (dn == 0).all(axis=0)
        assert ((dn == 0).any(axis=0) == nodata).all(), "nodata must be 0 in all bands at once"
        assert dn[:, ~nodata].min() >= 1000, "reflectance >= 0 is DN >= 1000 with the offset"
        site = path.name.split("-")[0]
        if site in bordered:
            assert 0.05 < nodata.mean() < 0.5
        else:
            assert not nodata.any()


def _band(dn: np.ndarray, name: str) -> np.ndarray:
    return (dn[L2A_BANDS.index(name)].astype(float) - 1000) / 10000


def test_spectra_follow_land_cover_as_real_ones_do(small_world):
    by_class: dict[int, list[np.ndarray]] = {}
    for path in _tiles(small_world):
        with rasterio.open(path) as src:
            dn = src.read()
        with rasterio.open(small_world["truth"] / "landcover" / path.name) as truth:
            assert truth.crs == src.crs and truth.transform == src.transform
            assert truth.shape == src.shape
            landcover = truth.read(1)
        valid = (dn != 0).all(axis=0)
        red, nir, swir = _band(dn, "B04"), _band(dn, "B08"), _band(dn, "B11")
        for code in np.unique(landcover[valid]):
            mask = valid & (landcover == code)
            by_class.setdefault(int(code), []).append(
                np.stack([red[mask], nir[mask], swir[mask]], axis=1)
            )
    stats = {code: np.concatenate(v).mean(axis=0) for code, v in by_class.items()}
    ndvi = {code: (nir - red) / (nir + red) for code, (red, nir, _) in stats.items()}
    assert {LandCover.WATER, LandCover.FOREST, LandCover.RESIDENTIAL} <= stats.keys()
    assert stats[LandCover.WATER][1] < 0.05, "water is dark in NIR"
    assert stats[LandCover.FOREST][1] > 0.25, "vegetation is bright in NIR"
    assert ndvi[LandCover.FOREST] > ndvi[LandCover.RESIDENTIAL] > ndvi[LandCover.WATER]
    if LandCover.BARE in stats:
        assert stats[LandCover.BARE][2] > stats[LandCover.FOREST][2], "soil is bright in SWIR"


def test_metadata_table_has_the_real_columns_and_formats(small_world):
    table = _metadata(small_world)
    assert tuple(table.columns) == METADATA_COMMON_ATTRIBUTES_COLUMNS
    assert table["uuid"].is_unique
    assert table["orig_id"].str.fullmatch(r"\d{10,16}").all()
    assert set(table["source"]) <= {"Mapillary", "KartaView"}
    assert set(table["projection_type"]) <= {"perspective", "spherical"}
    stamps = table["datetime_local"]
    assert stamps.str.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{6})?[+-]\d\d:\d\d").all()
    offsets = stamps.str[-6:]
    assert set(offsets) <= {"+02:00", "+08:00", "-03:00"}
    local = pd.to_datetime(stamps.str[:19])
    assert (local.dt.year == table["year"]).all() and (local.dt.hour == table["hour"]).all()
    assert (local.dt.month == table["month"]).all() and (local.dt.day == table["day"]).all()
    assert table["width"].dtype == float and table["height"].dtype == float
    spherical = table["projection_type"] == "spherical"
    assert (table.loc[spherical, "width"] == 2 * table.loc[spherical, "height"]).all()
    assert table.loc[spherical, "hFoV"].isna().all()
    assert ((table["heading"] >= 0) & (table["heading"] < 360)).all()
    assert (table["sequence_index"] < table["sequence_img_count"]).all()


def test_perception_and_contextual_tables(small_world):
    perception = pd.read_csv(small_world["streetscapes"] / "perception.csv")
    assert tuple(perception.columns) == ("uuid", *PERCEPTION_ATTRIBUTES)
    scores = perception.loc[:, list(PERCEPTION_ATTRIBUTES)]
    assert ((scores >= 0) & (scores <= 10)).all().all()
    assert perception["uuid"].tolist() == _metadata(small_world)["uuid"].tolist()
    contextual = pd.read_csv(small_world["streetscapes"] / "contextual.csv", dtype=str)
    assert set(contextual["lighting_condition"]) <= {"day", "night", "dusk/dawn"}
    assert set(contextual["weather"]) <= {"clear", "cloudy", "rainy", "snowy", "foggy"}


def test_images_are_jpegs_in_the_streetscapes_layout(small_world):
    table = _metadata(small_world)
    images = small_world["streetscapes"] / "images"
    expected = set()
    for row_number, record in enumerate(table.itertuples(), start=1):
        folder = image_folder_name(row_number, len(table), 10)
        path = images / folder / f"{record.uuid}.jpeg"
        expected.add(path)
        with Image.open(path) as image:
            assert image.format == "JPEG" and image.mode == "RGB"
            assert image.size == (int(record.width), int(record.height))
    assert set(images.rglob("*")) - {p.parent for p in expected} == expected
    assert {p.parent.name for p in expected} >= {"1_10", "11_20"}


def test_street_views_fall_inside_tiles_except_the_deliberate_ones(small_world):
    table = _metadata(small_world)
    truth = pd.read_csv(small_world["truth"] / "street_views.csv", keep_default_na=False)
    assert truth["uuid"].tolist() == table["uuid"].tolist()
    footprints = {}
    for path in _tiles(small_world):
        with rasterio.open(path) as src:
            footprints[path.stem] = (src.crs, src.bounds)

    def tiles_holding(lat: float, lon: float) -> list[str]:
        found = []
        for tile_id, (crs, b) in footprints.items():
            x, y = Transformer.from_crs(4326, crs, always_xy=True).transform(lon, lat)
            if b.left <= x < b.right and b.bottom < y <= b.top:
                found.append(tile_id)
        return found

    holders = [tiles_holding(r.lat, r.lon) for r in table.itertuples()]
    inside = truth["inside_tile"].astype(str) == "True"
    assert (~inside).sum() == 2
    for holder, is_inside, tile_id in zip(holders, inside, truth["tile_id"], strict=True):
        assert holder == ([tile_id] if is_inside else [])
    per_tile = truth.loc[inside, "tile_id"].value_counts()
    assert len(per_tile) == 3 and (per_tile >= 5).all()


def test_config_rejects_unknown_keys_and_bad_offsets():
    with pytest.raises(ValidationError, match="utc_offset"):
        small_world_config(sites=[{"name": "x", "lat": 0, "lon": 0, "utc_offset": "2"}])
    with pytest.raises(ValidationError, match="tile_sizes"):
        small_world_config(tile_sizes=4)
