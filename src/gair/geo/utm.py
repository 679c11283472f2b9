"""UTM zones of WGS84 locations (WGS84 / UTM, EPSG:326zz north and EPSG:327zz south)."""

from __future__ import annotations

from pyproj import CRS


def utm_zone_for(lat: float, lon: float) -> tuple[int, bool]:
    """Return ``(zone, northern)`` of the standard 6-degree UTM zone holding ``(lat, lon)``.

    The Norway and Svalbard exceptions are not applied: Sentinel-2 and this project use
    the plain 6-degree zones there too.
    """
    if not -90.0 <= lat <= 90.0:
        raise ValueError(f"latitude {lat} is outside [-90, 90] (are lat and lon swapped?)")
    if not -180.0 <= lon <= 180.0:
        raise ValueError(f"longitude {lon} is outside [-180, 180]")
    zone = min(int((lon + 180.0) // 6.0) + 1, 60)
    return zone, lat >= 0.0


def utm_crs_for(lat: float, lon: float) -> CRS:
    """The WGS84 / UTM CRS of the zone holding ``(lat, lon)``."""
    zone, northern = utm_zone_for(lat, lon)
    return CRS.from_epsg((32600 if northern else 32700) + zone)
