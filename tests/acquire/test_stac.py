"""What a STAC item says about a scene: assets, CRS, and the BOA offset of its pixels."""

from __future__ import annotations

import pytest

from gair.acquire.stac import (
    EARTH_SEARCH_ASSETS,
    PLANETARY_COMPUTER_ASSETS,
    SceneError,
    decide_offset,
    provider_for,
    scene_from_item,
)
from gair.io.rejects import InputConfigurationError


def rb(offset: float | None) -> dict:
    band = {"nodata": 0, "data_type": "uint16", "scale": 0.0001}
    return {"raster:bands": [band | ({} if offset is None else {"offset": offset})]}


@pytest.mark.parametrize("properties, asset, expected", [
    # baseline and raster:bands agree
    ({"s2:processing_baseline": "05.09"}, rb(-0.1), (-1000, "05.09", "raster:bands offset")),
    ({"s2:processing_baseline": "02.14"}, rb(0), (0, "02.14", "raster:bands offset")),
    # no raster:bands offset (Planetary Computer): the baseline decides
    ({"s2:processing_baseline": "04.00"}, rb(None), (-1000, "04.00", "s2:processing_baseline")),
    # Earth Search shifted the pixels back itself: no offset left in them
    ({"s2:processing_baseline": "05.09", "earthsearch:boa_offset_applied": True}, rb(-0.1),
     (0, "00.00", "earthsearch:boa_offset_applied")),
    ({"s2:processing_baseline": "05.09", "earthsearch:boa_offset_applied": False}, rb(-0.1),
     (-1000, "05.09", "raster:bands offset")),
    # they disagree: the offset decides, the tile gets a baseline of the same convention
    ({"s2:processing_baseline": "02.14"}, rb(-0.1), (-1000, "04.00", "raster:bands offset")),
    ({"s2:processing_baseline": "05.10"}, rb(0), (0, "00.00", "raster:bands offset")),
])
def test_offset_decision(properties, asset, expected):
    offset, baseline, source, note = decide_offset(properties, asset)
    assert (offset, baseline, source) == expected
    assert bool(note) == (baseline != properties["s2:processing_baseline"])


def test_unknown_offset_is_refused():
    with pytest.raises(SceneError, match="unknown"):
        decide_offset({}, rb(None))


def item(assets: dict[str, str], **properties) -> dict:
    return {
        "id": "S2A_32TMT_20230601_0_L2A", "collection": "sentinel-2-l2a",
        "geometry": {"type": "Polygon", "coordinates": [[[8, 45], [9, 45], [9, 46], [8, 46],
                                                         [8, 45]]]},
        "properties": {"datetime": "2023-06-01T10:20:31.024Z", "eo:cloud_cover": 3.5,
                       "s2:processing_baseline": "05.09"} | properties,
        "assets": {key: {"href": f"https://x/{band}.tif"} | rb(-0.1)
                   for band, key in assets.items()},
    }


def test_scene_from_earth_search_and_planetary_computer_items():
    earth = scene_from_item(item(EARTH_SEARCH_ASSETS, **{"proj:epsg": 32632}),
                            provider_for("earth_search"))
    assert earth.epsg == 32632 and earth.hrefs["B8A"] == "https://x/B8A.tif"
    assert earth.sensing_time == "2023-06-01T10:20:31.024000Z"
    planetary = scene_from_item(item(PLANETARY_COMPUTER_ASSETS, **{"proj:code": "EPSG:32632"}),
                                provider_for("planetary_computer"))
    assert planetary.epsg == 32632 and planetary.dn_offset == -1000


def test_items_lacking_what_acquire_needs_are_refused():
    keys = dict(EARTH_SEARCH_ASSETS)
    del keys["SCL"]
    with pytest.raises(SceneError, match="scl"):
        scene_from_item(item(keys, **{"proj:epsg": 32632}), provider_for("earth_search"))
    with pytest.raises(SceneError, match="proj:epsg"):
        scene_from_item(item(EARTH_SEARCH_ASSETS), provider_for("earth_search"))


def test_provider_overrides():
    custom = provider_for("earth_search", url="http://local/stac", asset_keys={"SCL": "scl-cog"})
    assert custom.url == "http://local/stac" and custom.asset_keys["SCL"] == "scl-cog"
    with pytest.raises(InputConfigurationError, match="unknown band"):
        provider_for("earth_search", asset_keys={"B10": "cirrus"})
    with pytest.raises(InputConfigurationError, match="unknown STAC provider"):
        provider_for("copernicus")
