from __future__ import annotations

import pytest

from gair.geo import utm_crs_for, utm_zone_for


@pytest.mark.parametrize(
    ("lat", "lon", "epsg"),
    [(48.775, 9.18, 32632), (1.352, 103.82, 32648), (-23.55, -46.63, 32723),
     (-1.29, 36.82, 32737), (0.0, -180.0, 32601), (10.0, 180.0, 32660)],
)
def test_utm_crs_of_known_places(lat, lon, epsg):
    assert utm_crs_for(lat, lon).to_epsg() == epsg


def test_swapped_coordinates_are_caught():
    with pytest.raises(ValueError, match="swapped"):
        utm_zone_for(103.82, 1.352)
