"""Coordinates, CRSs and projections. Geographic input is (lat, lon); pyproj is fed (lon, lat)."""

from gair.geo.utm import utm_crs_for, utm_zone_for

__all__ = ["utm_crs_for", "utm_zone_for"]
