"""Sentinel-2 L2A conventions: band order, wavelengths, BOA offset, GeoTIFF stacks.

Facts: the L2A product carries 12 bands (B10 is L1C only); from processing baseline
04.00 (scenes from 2022-01-25) digital numbers carry ``BOA_ADD_OFFSET = -1000``, so
reflectance = (DN - 1000) / 10000, and 0 is nodata in every band.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from pyproj import CRS

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


def reflectance_to_dn(reflectance: np.ndarray, processing_baseline: str) -> np.ndarray:
    """Encode surface reflectance as L2A digital numbers (uint16; 0 is kept for nodata)."""
    dn = np.rint(reflectance * QUANTIFICATION_VALUE) - boa_add_offset(processing_baseline)
    return np.clip(dn, 1, SATURATED_DN - 1).astype(np.uint16)


def write_l2a_geotiff(
    path: Path,
    dn: np.ndarray,
    crs: CRS,
    transform: Affine,
    processing_baseline: str,
    tags: dict[str, str] | None = None,
    block_size: int = 256,
) -> None:
    """Write a 12-band L2A stack as a tiled, deflate-compressed GeoTIFF.

    Band descriptions name the bands; per-band tags give wavelength and native resolution;
    dataset tags give the baseline and the offset as ``MTD_MSIL2A.xml`` names them.
    """
    if dn.ndim != 3 or dn.shape[0] != len(L2A_BANDS) or dn.dtype != np.uint16:
        raise ValueError(
            f"expected a uint16 array of shape ({len(L2A_BANDS)}, H, W), "
            f"got {dn.dtype} {dn.shape}"
        )
    height, width = dn.shape[1:]
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": len(L2A_BANDS),
        "dtype": "uint16",
        "crs": crs,
        "transform": transform,
        "nodata": NODATA_DN,
        "compress": "deflate",
        "predictor": 2,
        "tiled": True,
        "blockxsize": block_size,
        "blockysize": block_size,
        "interleave": "pixel",
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(dn)
        dst.update_tags(
            PROCESSING_BASELINE=processing_baseline,
            BOA_ADD_OFFSET=str(boa_add_offset(processing_baseline)),
            BOA_QUANTIFICATION_VALUE=str(QUANTIFICATION_VALUE),
            **(tags or {}),
        )
        for index, band in enumerate(L2A_BANDS, start=1):
            dst.set_band_description(index, band)
            dst.update_tags(
                index,
                BANDNAME=band,
                WAVELENGTH_NM=str(CENTRE_WAVELENGTH_NM[band]),
                RESOLUTION_M=str(NATIVE_RESOLUTION_M[band]),
            )
