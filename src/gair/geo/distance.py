"""Distances on the globe (a sphere of the Earth's mean radius: errors of a few per mille,
far below what pairing blocks and geolocalisation scores resolve)."""

from __future__ import annotations

import numpy as np

EARTH_RADIUS_KM = 6371.0088
"""The Earth's mean radius (IUGG)."""

KM_PER_DEGREE = EARTH_RADIUS_KM * np.pi / 180.0
"""Kilometres per degree of latitude (and of longitude at the equator)."""

GEOLOCALISATION_RADII_KM = (1.0, 25.0, 200.0, 750.0, 2500.0)
"""Geolocalisation accuracy radii, street to continent (GeoCLIP's)."""


def haversine_km(lat1: np.ndarray, lon1: np.ndarray, lat2: np.ndarray,
                 lon2: np.ndarray) -> np.ndarray:
    """Great-circle distance in km between (lat, lon) points given in degrees."""
    lat1, lon1, lat2, lon2 = (np.radians(np.asarray(v, dtype=np.float64))
                              for v in (lat1, lon1, lat2, lon2))
    a = (np.sin((lat2 - lat1) / 2) ** 2
         + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2)
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))
