"""Sentinel-2 L2A surface reflectance of a sample-world tile, from its hidden truth.

Each class is a mixture of endmember spectra with its own spatial texture, so that
classes differ the way real ones do (water dark in NIR, vegetation bright in NIR and low
in red, soil bright in SWIR) yet pairs of classes overlap in mean colour and are told
apart only by texture: cropland (rows) against grassland and bare soil, residential
(fine grain of roofs and gardens) against industrial (large roofs and yards).
"""

from __future__ import annotations

import numpy as np

from gair.io.l2a import L2A_BANDS, NATIVE_RESOLUTION_M
from gair.sample_world.landscape import LandCover, Landscape, smooth_field

# Surface reflectance of endmembers in L2A band order (B01 ... B09, B11, B12).
ENDMEMBERS: dict[str, np.ndarray] = {
    name: np.asarray(values, dtype=np.float32)
    for name, values in {
        "vegetation": [0.030, 0.035, 0.070, 0.035, 0.100, 0.280, 0.360, 0.390, 0.410, 0.370, 0.190, 0.090],
        "dry_grass": [0.050, 0.060, 0.095, 0.090, 0.140, 0.230, 0.270, 0.290, 0.310, 0.280, 0.290, 0.190],
        "soil": [0.080, 0.100, 0.140, 0.190, 0.220, 0.240, 0.260, 0.270, 0.290, 0.280, 0.360, 0.300],
        "asphalt": [0.070, 0.075, 0.085, 0.095, 0.100, 0.105, 0.110, 0.115, 0.118, 0.110, 0.130, 0.120],
        "roof_tile": [0.060, 0.070, 0.090, 0.180, 0.200, 0.220, 0.240, 0.250, 0.260, 0.250, 0.320, 0.270],
        "roof_metal": [0.140, 0.160, 0.170, 0.180, 0.190, 0.200, 0.205, 0.210, 0.215, 0.200, 0.230, 0.210],
        "concrete": [0.150, 0.180, 0.200, 0.220, 0.230, 0.240, 0.250, 0.255, 0.260, 0.250, 0.290, 0.260],
        "water": [0.060, 0.055, 0.045, 0.030, 0.022, 0.015, 0.012, 0.010, 0.008, 0.006, 0.004, 0.003],
        "turbid_water": [0.070, 0.070, 0.080, 0.065, 0.060, 0.035, 0.030, 0.025, 0.022, 0.015, 0.008, 0.005],
    }.items()
}


def _blocks(rng: np.random.Generator, shape: tuple[int, int], block_px: int) -> np.ndarray:
    """Uniform random values constant over square blocks (buildings, yards)."""
    height, width = shape
    coarse = rng.random((height // block_px + 1, width // block_px + 1))
    return np.repeat(np.repeat(coarse, block_px, 0), block_px, 1)[:height, :width]


def _mix(weights: dict[str, np.ndarray]) -> np.ndarray:
    """Per-pixel linear mixture of endmembers: (12, H, W) from {name: (H, W) weight}."""
    return sum(ENDMEMBERS[name][:, None, None] * w[None] for name, w in weights.items())


def _native_resolution(reflectance: np.ndarray, pixel_size_m: float) -> np.ndarray:
    """Average 20 m and 60 m bands over their native footprint, as a 10 m stack shows them."""
    out = reflectance.copy()
    height, width = reflectance.shape[1:]
    for index, band in enumerate(L2A_BANDS):
        factor = round(NATIVE_RESOLUTION_M[band] / pixel_size_m)
        if factor <= 1:
            continue
        h, w = -(-height // factor) * factor, -(-width // factor) * factor
        padded = np.pad(reflectance[index], ((0, h - height), (0, w - width)), mode="edge")
        means = padded.reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3))
        out[index] = np.repeat(np.repeat(means, factor, 0), factor, 1)[:height, :width]
    return out


def render_reflectance(
    rng: np.random.Generator, landscape: Landscape, pixel_size_m: float = 10.0
) -> np.ndarray:
    """Surface reflectance (12, H, W) float32 of a tile; B01...B12 in L2A order."""
    lc = landscape.landcover
    shape = lc.shape
    brightness, angle, period, stage = (
        landscape.parcel_params[landscape.parcel_id, k] for k in range(4)
    )
    rows, cols = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    zeros = np.zeros(shape, dtype=np.float32)
    fine = rng.random(shape).astype(np.float32)
    lowfreq = smooth_field(rng, shape, 6.0)
    aff = landscape.affluence

    # Vegetation, soil, ... fractions per class; each line is one class's recipe.
    rows_wave = 0.5 + 0.5 * np.sin(
        2 * np.pi * (cols * np.cos(angle) + rows * np.sin(angle)) / period
    )
    crop_veg = stage * (rows_wave > 0.45)
    houses = _blocks(rng, shape, 2)
    yards = _blocks(rng, shape, int(rng.integers(5, 9)))
    garden = np.clip(0.12 + 0.5 * aff, 0.0, 0.8)
    res_roof = houses < 0.55 - 0.2 * aff
    ind_roof = yards < 0.6
    fractions = {
        "vegetation": np.select(
            [lc == LandCover.FOREST, lc == LandCover.GRASSLAND, lc == LandCover.CROPLAND,
             lc == LandCover.RESIDENTIAL, lc == LandCover.INDUSTRIAL],
            [0.75 + 0.25 * fine, 0.45 + 0.3 * lowfreq, crop_veg,
             np.where(res_roof, 0.0, garden), np.where(ind_roof, 0.0, 0.08 * fine)],
            default=zeros),
        "dry_grass": np.select([lc == LandCover.GRASSLAND], [0.55 - 0.3 * lowfreq], zeros),
        "soil": np.select(
            [lc == LandCover.CROPLAND, lc == LandCover.BARE, lc == LandCover.FOREST],
            [1.0 - crop_veg, 0.8 + 0.2 * lowfreq, 0.05 * fine], default=zeros),
        "roof_tile": np.where((lc == LandCover.RESIDENTIAL) & res_roof & (houses < 0.3), 1.0, 0.0),
        "roof_metal": np.where(lc == LandCover.INDUSTRIAL, ind_roof * 1.0, 0.0)
        + np.where((lc == LandCover.RESIDENTIAL) & res_roof & (houses >= 0.3), 1.0, 0.0),
        "concrete": np.select(
            [lc == LandCover.INDUSTRIAL, lc == LandCover.RESIDENTIAL, lc == LandCover.BARE],
            [np.where(ind_roof, 0.0, 0.92 - 0.08 * fine), np.where(res_roof, 0.0, 1.0 - garden),
             0.2 - 0.2 * lowfreq], default=zeros),
        "asphalt": np.where(lc == LandCover.ROAD, 1.0, 0.0),
        "water": np.where(lc == LandCover.WATER, 1.0 - 0.6 * lowfreq, 0.0),
        "turbid_water": np.where(lc == LandCover.WATER, 0.6 * lowfreq, 0.0),
    }
    reflectance = _mix({k: v.astype(np.float32) for k, v in fractions.items()})
    # Forest canopy shadows; parcel-to-parcel brightness; scene-wide illumination and haze.
    reflectance *= np.where(lc == LandCover.FOREST, 0.8 + 0.35 * fine, 1.0)[None]
    reflectance *= np.where(lc == LandCover.WATER, 1.0, brightness)[None]
    reflectance *= rng.uniform(0.92, 1.08)
    haze = rng.uniform(0.0, 0.02) * np.linspace(1.0, 0.0, len(L2A_BANDS)) ** 2
    reflectance += haze[:, None, None].astype(np.float32)
    reflectance = _native_resolution(reflectance, pixel_size_m)
    reflectance += rng.normal(0.0, 0.004, reflectance.shape).astype(np.float32)
    return np.clip(reflectance, 0.0, 1.0).astype(np.float32)


def nodata_swath_mask(rng: np.random.Generator, size_px: int) -> np.ndarray:
    """True outside a satellite swath edge that cuts one corner off a square tile."""
    rows, cols = np.meshgrid(np.arange(size_px), np.arange(size_px), indexing="ij")
    corner = int(rng.integers(4))
    u = cols if corner in (0, 3) else size_px - 1 - cols
    v = rows if corner in (0, 1) else size_px - 1 - rows
    # Real swath edges run obliquely across the MGRS grid; cut 12-30 % of the tile off.
    phi = np.deg2rad(rng.uniform(30.0, 60.0))
    return u * np.cos(phi) + v * np.sin(phi) < size_px * rng.uniform(0.35, 0.55)
