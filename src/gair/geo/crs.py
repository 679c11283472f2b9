"""Coordinate transformations, built once per CRS pair and always fed (x, y) = (lon, lat)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from pyproj import Transformer


@lru_cache(maxsize=512)
def transformer(source: str, target: str) -> Transformer:
    """A cached ``always_xy`` transformer: geographic input is (lon, lat), never (lat, lon)."""
    return Transformer.from_crs(str(source), str(target), always_xy=True)


def transform_grouped(x: np.ndarray, y: np.ndarray, group: np.ndarray, codes: list[str],
                      inverse: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Project each point from EPSG:4326 into CRS ``codes[group[i]]`` (or back, ``inverse``).

    One pyproj call per CRS; points are grouped by an integer sort, so the cost stays that
    of one vectorised transform however many CRSs there are.
    """
    out_x, out_y = np.empty(len(x)), np.empty(len(x))
    order = np.argsort(group, kind="stable")
    bounds = np.searchsorted(group[order], np.arange(len(codes) + 1))
    for k, code in enumerate(codes):
        members = order[bounds[k] : bounds[k + 1]]
        if len(members):
            source, target = (code, "EPSG:4326") if inverse else ("EPSG:4326", code)
            out_x[members], out_y[members] = transformer(source, target).transform(
                x[members], y[members]
            )
    return out_x, out_y
