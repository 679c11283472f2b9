"""The hidden ground truth of one sample-world tile: land cover, roads and smooth fields.

Land is cut into parcels (a jittered-grid Voronoi partition); each parcel gets a class
from an ``urbanity`` field (built-up versus natural) and a ``vegetation`` field (which
natural class); streets run along the boundaries of built-up parcels, arterial roads
cross the tile, lakes and a river follow a ``wetness`` field. An ``affluence`` field is
the continuous target: it changes both how residential land looks from space (more
green between houses) and what street views show (façades, street trees, road repair).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from enum import IntEnum

import numpy as np


class LandCover(IntEnum):
    """Land-cover classes of the sample world (codes stored in the truth rasters)."""

    WATER = 1
    FOREST = 2
    GRASSLAND = 3
    CROPLAND = 4
    RESIDENTIAL = 5
    INDUSTRIAL = 6
    BARE = 7
    ROAD = 8


BUILT_UP = (LandCover.RESIDENTIAL, LandCover.INDUSTRIAL)

LEGEND_RGB: dict[LandCover, tuple[int, int, int]] = {
    LandCover.WATER: (0, 100, 200),
    LandCover.FOREST: (0, 100, 0),
    LandCover.GRASSLAND: (255, 255, 76),
    LandCover.CROPLAND: (240, 150, 255),
    LandCover.RESIDENTIAL: (250, 0, 0),
    LandCover.INDUSTRIAL: (130, 0, 130),
    LandCover.BARE: (180, 180, 180),
    LandCover.ROAD: (40, 40, 40),
}
"""Display colours (close to ESA WorldCover's where a class matches)."""


@dataclass(frozen=True)
class Landscape:
    """Per-pixel truth of one tile; all arrays are (H, W) on the tile's pixel grid."""

    landcover: np.ndarray  # uint8 LandCover codes
    parcel_id: np.ndarray  # int32, which parcel each pixel belongs to
    affluence: np.ndarray  # float32 in [0, 1]
    urbanity: np.ndarray  # float32 in [0, 1]
    parcel_params: np.ndarray  # float32 (n_parcels, 4): brightness, angle, period, stage


def smooth_field(rng: np.random.Generator, shape: tuple[int, int], scale_px: float) -> np.ndarray:
    """Gaussian-filtered white noise, rank-normalised to a uniform [0, 1] field."""
    noise = rng.standard_normal(shape)
    ky = np.fft.fftfreq(shape[0])[:, None]
    kx = np.fft.fftfreq(shape[1])[None, :]
    transfer = np.exp(-2.0 * (np.pi * scale_px) ** 2 * (kx**2 + ky**2))
    field = np.real(np.fft.ifft2(np.fft.fft2(noise) * transfer))
    ranks = np.argsort(np.argsort(field, axis=None), axis=None).reshape(shape)
    return (ranks / (ranks.size - 1)).astype(np.float32)


def voronoi_parcels(rng: np.random.Generator, shape: tuple[int, int], cell_px: int) -> np.ndarray:
    """Parcel id of every pixel: nearest seed of a jittered grid (one seed per cell).

    A pixel's nearest seed is always in its own cell or one of the 8 around it, so the
    cost is 9 distance evaluations per pixel whatever the tile size.
    """
    height, width = shape
    rows_g, cols_g = height // cell_px + 3, width // cell_px + 3
    # Seed (i, j) lies in cell (i - 1, j - 1), so border cells have neighbours too.
    seeds = (np.stack(np.meshgrid(np.arange(rows_g), np.arange(cols_g), indexing="ij"), -1)
             - 1 + rng.uniform(0.15, 0.85, size=(rows_g, cols_g, 2))) * cell_px
    rr, cc = np.meshgrid(np.arange(height) + 0.5, np.arange(width) + 0.5, indexing="ij")
    ci, cj = (rr // cell_px).astype(int) + 1, (cc // cell_px).astype(int) + 1
    best = np.full(shape, np.inf)
    parcel = np.zeros(shape, dtype=np.int32)
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            si, sj = ci + di, cj + dj
            dist = (seeds[si, sj, 0] - rr) ** 2 + (seeds[si, sj, 1] - cc) ** 2
            closer = dist < best
            best[closer] = dist[closer]
            parcel[closer] = (si * cols_g + sj)[closer]
    return parcel


def _draw_polyline(mask: np.ndarray, points: np.ndarray, width_px: float) -> None:
    """Burn a polyline of ``(row, col)`` vertices with the given width into ``mask``."""
    height, width = mask.shape
    radius = max(width_px / 2.0, 0.5)
    for (r0, c0), (r1, c1) in itertools.pairwise(points):
        steps = int(np.ceil(np.hypot(r1 - r0, c1 - c0) * 2)) + 1
        for t in np.linspace(0.0, 1.0, steps):
            r, c = r0 + t * (r1 - r0), c0 + t * (c1 - c0)
            r_lo, r_hi = int(np.floor(r - radius + 0.5)), int(np.floor(r + radius - 0.5)) + 1
            c_lo, c_hi = int(np.floor(c - radius + 0.5)), int(np.floor(c + radius - 0.5)) + 1
            if r_hi <= 0 or c_hi <= 0 or r_lo >= height or c_lo >= width:
                continue  # off the tile (a negative stop would wrap around)
            mask[max(r_lo, 0) : min(r_hi, height), max(c_lo, 0) : min(c_hi, width)] = True


def _meander(rng: np.random.Generator, shape: tuple[int, int], wiggle: float) -> np.ndarray:
    """A gently curving line across the tile, edge to opposite edge, as (row, col) vertices."""
    height, width = shape
    horizontal = rng.random() < 0.5
    length = width if horizontal else height
    across = (height if horizontal else width) * rng.uniform(0.15, 0.85)
    t = np.linspace(-0.05 * length, 1.05 * length, 48)
    slope = rng.uniform(-0.6, 0.6)
    offset = across + slope * (t - length / 2)
    offset += np.cumsum(rng.normal(0.0, wiggle, size=t.size))
    return np.stack([offset, t], -1) if horizontal else np.stack([t, offset], -1)


def generate_landscape(
    rng: np.random.Generator, size_px: int, site_urbanity: float, with_river: bool
) -> Landscape:
    """Draw the hidden truth of one square tile of ``size_px`` pixels."""
    shape = (size_px, size_px)
    urbanity = smooth_field(rng, shape, size_px / 6)
    affluence = smooth_field(rng, shape, size_px / 8)
    vegetation = smooth_field(rng, shape, size_px / 10)
    wetness = smooth_field(rng, shape, size_px / 7)

    parcel = voronoi_parcels(rng, shape, cell_px=max(size_px // 20, 8))
    n_parcels = int(parcel.max()) + 1
    # Class of a parcel from the fields at its first pixel (a stable, seed-like point).
    flat = parcel.ravel()
    _, first_pixel = np.unique(flat, return_index=True)
    parcel_ids = flat[first_pixel]
    u = urbanity.ravel()[first_pixel]
    v = vegetation.ravel()[first_pixel]
    a = affluence.ravel()[first_pixel]
    built_p = 1.0 / (1.0 + np.exp(-(u - (1.0 - site_urbanity)) * 12.0))
    draw = rng.random((3, parcel_ids.size))
    natural = np.select(
        [v + 0.25 * (draw[1] - 0.5) > 0.68, v + 0.25 * (draw[1] - 0.5) > 0.36,
         v + 0.25 * (draw[1] - 0.5) > 0.14],
        [LandCover.FOREST, LandCover.CROPLAND, LandCover.GRASSLAND],
        default=LandCover.BARE,
    )
    built = np.where(draw[2] < 0.78 - 0.35 * (1.0 - a) * (u > 0.8), LandCover.RESIDENTIAL,
                     LandCover.INDUSTRIAL)
    classes = np.zeros(n_parcels, dtype=np.uint8)
    classes[parcel_ids] = np.where(draw[0] < built_p, built, natural)
    landcover = classes[parcel]

    # Water: lakes where the wetness field peaks, and sometimes a river.
    water = wetness > 0.93
    if with_river:
        _draw_polyline(water, _meander(rng, shape, wiggle=5.0), rng.uniform(3.0, 6.0))
    landcover[water] = LandCover.WATER

    # Streets along the boundaries of built-up parcels; arterials across the tile.
    roads = np.zeros(shape, dtype=bool)
    boundary = np.zeros(shape, dtype=bool)
    boundary[:, :-1] |= parcel[:, 1:] != parcel[:, :-1]
    boundary[:-1, :] |= parcel[1:, :] != parcel[:-1, :]
    is_built = np.isin(landcover, BUILT_UP)
    near_built = is_built.copy()
    near_built[:, 1:] |= is_built[:, :-1]
    near_built[1:, :] |= is_built[:-1, :]
    roads |= boundary & near_built
    for _ in range(int(rng.integers(2, 4))):
        _draw_polyline(roads, _meander(rng, shape, wiggle=2.5), rng.choice([1.0, 2.0]))
    landcover[roads] = LandCover.ROAD  # arterials cross rivers on bridges

    # Per-parcel appearance: brightness, crop-row angle and period, crop growth stage.
    parcel_params = np.stack(
        [rng.normal(1.0, 0.07, n_parcels), rng.uniform(0, np.pi, n_parcels),
         rng.uniform(2.2, 4.5, n_parcels), rng.uniform(0.15, 0.95, n_parcels)],
        axis=1,
    ).astype(np.float32)
    return Landscape(landcover, parcel, affluence, urbanity, parcel_params)


def dominant_class(landcover: np.ndarray, row: int, col: int, radius: int) -> int:
    """Most frequent non-road class within ``radius`` pixels of (row, col); 0 if none."""
    window = landcover[
        max(row - radius, 0) : row + radius + 1, max(col - radius, 0) : col + radius + 1
    ]
    counts = np.bincount(window.ravel(), minlength=len(LandCover) + 1)
    counts[[0, LandCover.ROAD]] = 0
    return int(counts.argmax()) if counts.any() else 0
