"""Sentinel-2 L2A facts and the tile reader's limits, standard library only.

The configuration (:mod:`gair.parameters`), the preprocessing contract and the
acquisition name these; keeping them apart from :mod:`gair.io.sentinel2` lets those
modules use them without loading rasterio or geopandas.

Facts: the L2A product carries 12 bands (B10 is L1C only); from processing baseline
04.00 (scenes from 2022-01-25) digital numbers carry ``BOA_ADD_OFFSET = -1000``, so
reflectance = (DN - 1000) / 10000, and 0 is nodata in every band.
"""

from __future__ import annotations

L2A_BANDS: tuple[str, ...] = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12",
)
"""Bands of an L2A product in the order of stacked deliveries (MPC, SatCLIP, SSL4EO)."""

GAIR_BANDS: tuple[str, ...] = (
    "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12",
)
"""The 10 bands GAIR's RS encoder reads (the 60 m bands B01 and B09 are dropped)."""

CENTRE_WAVELENGTH_NM: dict[str, int] = {
    "B01": 443, "B02": 490, "B03": 560, "B04": 665, "B05": 704, "B06": 740,
    "B07": 783, "B08": 842, "B8A": 865, "B09": 945, "B11": 1610, "B12": 2190,
}

NATIVE_RESOLUTION_M: dict[str, int] = {
    "B01": 60, "B02": 10, "B03": 10, "B04": 10, "B05": 20, "B06": 20,
    "B07": 20, "B08": 10, "B8A": 20, "B09": 60, "B11": 20, "B12": 20,
}

QUANTIFICATION_VALUE = 10_000
NODATA_DN = 0
SATURATED_DN = 65_535

MASKED_SCL_CLASSES: tuple[int, ...] = (0, 1, 3, 8, 9, 10)
"""Scene classification (SCL) classes masked by default: no data, saturated/defective,
cloud shadow, cloud medium and high probability, thin cirrus."""


def boa_add_offset(processing_baseline: str) -> int:
    """``BOA_ADD_OFFSET`` of a processing baseline such as ``"05.09"`` or ``"N0509"``.

    Baselines from 04.00 on add 1000 to every digital number (the offset is -1000).
    """
    digits = processing_baseline.upper().removeprefix("N").replace(".", "")
    if len(digits) != 4 or not digits.isdigit():
        raise ValueError(
            f"processing baseline {processing_baseline!r} is not of the form 'NN.NN' or 'NNNNN'"
        )
    return -1000 if int(digits[:2]) >= 4 else 0


MAX_TILE_PIXELS = 400_000_000
"""Default limit on the pixels a tile may declare: a 100 x 100 km Sentinel-2 tile at 10 m is
10980 x 10980 (121 MP). A sparse GeoTIFF of a few MB can declare 200000 x 200000."""

WARP_RESAMPLING = ("nearest", "bilinear", "cubic", "average")
"""How a tile that is not on a metric grid of the expected pixel size is warped onto one."""

GROUND_RESOLUTION_TOLERANCE = 0.1
"""A tile's ground resolution (its coarser axis) may differ this much (relative) from the
expected pixel size: GAIR's EPSG:4326 tiles are 9.9-10.1 m down a column anywhere, and
10 m x cos(latitude) along a row."""

MAX_SHARE_BELOW_OFFSET = 0.05
"""Of a tile whose offset is -1000, at most this share of valid blue pixels may read below
1000. Real L2A scenes that carry the offset have almost none (at most 0.2 % in the 23 real
chips of ``../shared/realdata``), scenes without it 33-100 % (land and water reflect some
blue, and B02 reflectance is rarely negative)."""
