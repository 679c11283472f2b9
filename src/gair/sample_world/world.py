"""Build the sample world and write it in the real formats.

:func:`build_world` decides everything that is cheap (tile grids, street-view positions,
their metadata and labels); :func:`write_sentinel2`, :func:`write_streetscapes` and
:func:`write_truth` render the expensive parts (reflectance, JPEGs) one file at a time
while writing, so memory stays flat as the world is scaled up. Every random draw comes
from a generator keyed by (seed, site, tile, purpose), so a file's bytes depend only on
the seed and its own place in the world.
"""

from __future__ import annotations

import datetime as dt
import math
import string
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import rasterio
from affine import Affine
from PIL import Image
from pyproj import CRS

from gair import __version__
from gair.geo.crs import transformer
from gair.geo.utm import utm_crs_for, utm_zone_for
from gair.io.sentinel2 import reflectance_to_dn, write_l2a_geotiff
from gair.io.streetscapes import (
    IMAGE_SUFFIX,
    METADATA_COMMON_ATTRIBUTES_COLUMNS,
    PERCEPTION_ATTRIBUTES,
    image_folder_name,
)
from gair.sample_world.config import SampleWorldConfig, Site
from gair.sample_world.landscape import (
    LEGEND_RGB,
    LandCover,
    Landscape,
    dominant_class,
    generate_landscape,
)
from gair.sample_world.spectra import nodata_swath_mask, render_reflectance
from gair.sample_world.streetview import (
    StreetViewScene,
    draw_weather,
    lighting_at,
    render_street_view,
)

# Purposes of the keyed random generators (the last element of each key).
_LANDSCAPE, _SPECTRA, _SWATH, _PLACEMENT, _METADATA = range(5)
_OUTSIDE_SITE = 10_000  # site index used for the deliberately outside street views
_RENDER_BASE = 1_000_000  # street view i of a tile renders with purpose _RENDER_BASE + i

CONTEXTUAL_COLUMNS = (
    "uuid", "source", "orig_id", "glare", "lighting_condition", "pano_status", "platform",
    "quality", "reflection", "view_direction", "weather",
)

_LAT_BANDS = "CDEFGHJKLMNPQRSTUVWX"


def _rng(config: SampleWorldConfig, *key: int) -> np.random.Generator:
    return np.random.default_rng([config.seed, *key])


def _block_size(config: SampleWorldConfig) -> int:
    """GeoTIFF block edge: 256 px, or less so small tiles still hold several blocks."""
    return min(256, max(16, config.tile_size_px // 2 // 16 * 16))


@dataclass(frozen=True)
class Tile:
    """One Sentinel-2 tile of the sample world: its grid and how to redraw its truth."""

    tile_id: str
    site_index: int
    tile_index: int
    site: Site
    crs: CRS
    transform: Affine
    size_px: int
    nodata_border: bool

    @property
    def key(self) -> tuple[int, int]:
        return self.site_index, self.tile_index

    def landscape(self, config: SampleWorldConfig) -> Landscape:
        """The tile's hidden truth (recomputed from its seed: cheap, and memory stays flat)."""
        rng = _rng(config, *self.key, _LANDSCAPE)
        return generate_landscape(rng, self.size_px, self.site.urbanity, with_river=True)

    def nodata_mask(self, config: SampleWorldConfig) -> np.ndarray:
        if not self.nodata_border:
            return np.zeros((self.size_px, self.size_px), dtype=bool)
        return nodata_swath_mask(_rng(config, *self.key, _SWATH), self.size_px)

    def contains(self, lat: float, lon: float) -> bool:
        x, y = transformer("EPSG:4326", self.crs.to_string()).transform(lon, lat)
        col, row = ~self.transform @ (x, y)
        return 0.0 <= col < self.size_px and 0.0 <= row < self.size_px


@dataclass(frozen=True)
class SampleWorld:
    """Tiles, and one row per street view with its metadata and hidden labels."""

    config: SampleWorldConfig
    tiles: tuple[Tile, ...]
    street_views: pd.DataFrame

    def provenance(self) -> dict[str, Any]:
        return {
            "generator": "gair.sample_world",
            "gair_version": __version__,
            "config": self.config.model_dump(mode="json"),
        }


def _tile_grid(config: SampleWorldConfig) -> tuple[Tile, ...]:
    """Tiles of each site, west to east, each in the UTM zone of its own centre."""
    tiles = []
    size_m = config.tile_size_px * config.pixel_size_m
    for site_index, site in enumerate(config.sites):
        site_crs = utm_crs_for(site.lat, site.lon)
        to_site = transformer("EPSG:4326", site_crs.to_string())
        cx, cy = to_site.transform(site.lon, site.lat)
        for tile_index in range(config.tiles_per_site):
            lon, lat = to_site.transform(cx + tile_index * size_m, cy, direction="INVERSE")
            crs = utm_crs_for(lat, lon)
            x, y = transformer("EPSG:4326", crs.to_string()).transform(lon, lat)
            # Snap the upper-left corner to the pixel grid, as Sentinel-2 grids are.
            west = math.floor((x - size_m / 2) / config.pixel_size_m) * config.pixel_size_m
            north = math.floor((y + size_m / 2) / config.pixel_size_m) * config.pixel_size_m
            zone, _ = utm_zone_for(lat, lon)
            band = _LAT_BANDS[min(int((lat + 80) // 8), len(_LAT_BANDS) - 1)]
            date = config.acquisition_date.replace("-", "")
            tiles.append(Tile(
                tile_id=f"{site.name}-{tile_index:02d}_T{zone:02d}{band}_{date}_L2A",
                site_index=site_index, tile_index=tile_index, site=site, crs=crs,
                transform=Affine(config.pixel_size_m, 0.0, west, 0.0, -config.pixel_size_m, north),
                size_px=config.tile_size_px, nodata_border=site.nodata_border,
            ))
    return tuple(tiles)


def _road_walks(
    rng: np.random.Generator, walkable: np.ndarray, n_views: int
) -> list[list[tuple[int, int, float]]]:
    """Sequences of (row, col, heading in degrees) along roads, like a car's image sequence."""
    road_pixels = np.argwhere(walkable)
    sequences: list[list[tuple[int, int, float]]] = []
    placed = 0
    neighbours = [(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if dr or dc]
    attempts = 0
    while placed < n_views and attempts < 50 * n_views and len(road_pixels):
        attempts += 1
        row, col = road_pixels[rng.integers(len(road_pixels))]
        angle = rng.uniform(0, 2 * np.pi)
        direction = np.array([-np.cos(angle), np.sin(angle)])  # (drow, dcol), north-up
        # Short sequences with 30-80 m between images spread views over many RS patches.
        length = int(min(rng.integers(2, 6), n_views - placed))
        spacing = int(rng.integers(3, 9))
        visited = {(int(row), int(col))}
        sequence = []
        steps = 0
        while len(sequence) < length:
            options = [
                (dr, dc) for dr, dc in neighbours
                if 0 <= row + dr < walkable.shape[0] and 0 <= col + dc < walkable.shape[1]
                and walkable[row + dr, col + dc] and (row + dr, col + dc) not in visited
            ]
            if not options:
                break
            scores = [np.dot(direction, np.array(o) / np.hypot(*o)) + rng.normal(0, 0.1)
                      for o in options]
            step = np.array(options[int(np.argmax(scores))])
            direction = 0.6 * direction + 0.4 * step / np.hypot(*step)
            row, col = row + step[0], col + step[1]
            visited.add((int(row), int(col)))
            steps += 1
            if steps % spacing == 0:
                heading = math.degrees(math.atan2(direction[1], -direction[0])) % 360.0
                sequence.append((int(row), int(col), heading))
        if sequence:
            sequences.append(sequence)
            placed += len(sequence)
    return sequences


def _sectors(landcover: np.ndarray, row: int, col: int, headings: list[float],
             fallback: np.random.Generator) -> tuple[int, ...]:
    """Class seen in each compass direction: the most common non-road class 20-80 m away."""
    codes = []
    for heading in headings:
        rad = math.radians(heading)
        seen = []
        for dist in range(2, 9):
            r, c = round(row - dist * math.cos(rad)), round(col + dist * math.sin(rad))
            if 0 <= r < landcover.shape[0] and 0 <= c < landcover.shape[1]:
                if landcover[r, c] != LandCover.ROAD:
                    seen.append(int(landcover[r, c]))
        if seen:
            codes.append(int(np.bincount(seen).argmax()))
        else:
            codes.append(int(fallback.choice(list(LandCover)[:-1])))
    return tuple(codes)


def _perception(fractions: dict[LandCover, float], affluence: float, weather: str,
                lighting: str, rng: np.random.Generator) -> dict[str, float]:
    """Perception scores (0-10) as a function of the surroundings and the conditions."""
    veg = sum(fractions[c] for c in (LandCover.FOREST, LandCover.GRASSLAND, LandCover.CROPLAND))
    res, ind = fractions[LandCover.RESIDENTIAL], fractions[LandCover.INDUSTRIAL]
    water = fractions[LandCover.WATER]
    open_land = fractions[LandCover.CROPLAND] + fractions[LandCover.BARE]
    gloomy = float(weather in ("rainy", "foggy"))
    day = float(lighting == "day")
    night = float(lighting == "night")
    raw = {
        "Safe": 3.0 + 3.5 * affluence + 1.0 * day - 1.5 * ind,
        "Lively": 2.0 + 5.0 * res + 1.5 * ind + 1.0 * affluence - 1.0 * gloomy,
        "Wealthy": 1.5 + 6.5 * affluence + 0.5 * res - 1.0 * ind,
        "Beautiful": 2.5 + 2.5 * veg + 3.0 * water + 2.0 * affluence - 2.5 * ind
        + 0.5 * (weather == "clear"),
        "Boring": 5.0 + 2.0 * open_land - 2.5 * res - 1.5 * water + 1.0 * (1.0 - affluence),
        "Depressing": 2.0 + 3.5 * ind + 2.5 * (1.0 - affluence) + 1.0 * gloomy + 1.0 * night
        - 1.5 * veg,
    }
    return {k: round(float(np.clip(v + rng.normal(0.0, 0.6), 0.0, 10.0)), 2)
            for k, v in raw.items()}


def _class_fractions(landcover: np.ndarray | None, row: int, col: int, radius: int = 5,
                     rng: np.random.Generator | None = None) -> dict[LandCover, float]:
    if landcover is None:  # outside every tile: surroundings unknown, draw them
        weights = rng.dirichlet(np.ones(len(LandCover) - 1))
        return dict(zip(list(LandCover)[:-1], weights.tolist(), strict=True)) | {
            LandCover.ROAD: 0.0
        }
    window = landcover[max(row - radius, 0) : row + radius + 1,
                       max(col - radius, 0) : col + radius + 1]
    counts = np.bincount(window.ravel(), minlength=len(LandCover) + 1).astype(float)
    counts[[0, LandCover.ROAD]] = 0.0
    total = counts.sum() or 1.0
    return {c: counts[c] / total for c in LandCover}


def _sequence_metadata(config: SampleWorldConfig, rng: np.random.Generator, site: Site,
                       n_images: int) -> dict[str, Any]:
    """What the images of one capture sequence share: provider, ids, date, camera, weather."""
    kartaview = rng.random() < config.kartaview_fraction
    panorama = (not kartaview) and rng.random() < config.panorama_fraction
    # May to September of 2023 or 2024: the configured UTC offset is the summer one.
    start = dt.date(int(rng.choice([2023, 2024])), 5, 1) + dt.timedelta(days=int(rng.integers(0, 153)))
    hour = int(rng.choice([*range(8, 18)] * 8 + [6, 7, 18, 19] * 3 + [20, 21, 22] * 2))
    begin = dt.datetime(start.year, start.month, start.day, hour, int(rng.integers(60)),
                        int(rng.integers(60)), int(rng.integers(1000)) * 1000)
    alphabet = string.ascii_letters + string.digits
    first_index = int(rng.integers(0, 2000))
    return {
        "source": "KartaView" if kartaview else "Mapillary",
        "sequence_id": str(rng.integers(1_000_000, 9_999_999)) if kartaview
        else "".join(rng.choice(list(alphabet), 22)),
        "first_index": first_index,
        "img_count": first_index + n_images + int(rng.integers(0, 400)),
        "begin": begin,
        "panorama": panorama,
        "weather": draw_weather(rng),
        "offset": site.utc_offset,
    }


def _metadata_row(config: SampleWorldConfig, rng: np.random.Generator, seq: dict[str, Any],
                  index_in_seq: int, lat: float, lon: float, heading: float) -> dict[str, Any]:
    """One row of ``metadata_common_attributes.csv``, formatted the way the real table is."""
    kartaview = seq["source"] == "KartaView"
    when = seq["begin"] + dt.timedelta(seconds=2 * index_in_seq)
    stamp = when.strftime("%Y-%m-%d %H:%M:%S")
    if not kartaview:
        stamp += f".{when.microsecond:06d}"
    width = config.image_width
    height = width // 2 if seq["panorama"] else config.image_height
    fov = (None, None)
    if kartaview:
        fov = (125.0, 94.0)
    elif not seq["panorama"] and rng.random() < 0.5:
        fov = (float(rng.uniform(60, 110)), float(rng.uniform(45, 85)))
    return {
        "uuid": str(uuid.UUID(int=int(rng.integers(0, 2**63)) << 65 | int(rng.integers(0, 2**63)),
                              version=4)),
        "source": seq["source"],
        "orig_id": str(rng.integers(1_000_000_000, 3_000_000_000)) if kartaview
        else str(rng.integers(10**14, 10**16)),
        "lat": round(lat, 6) if kartaview else lat,
        "lon": round(lon, 6) if kartaview else lon,
        "datetime_local": stamp + seq["offset"],
        "year": when.year, "month": when.month, "day": when.day, "hour": when.hour,
        "width": float(width), "height": float(height),
        "heading": round(heading, 2) if kartaview else heading,
        "projection_type": "spherical" if seq["panorama"] else "perspective",
        "hFoV": fov[0], "vFoV": fov[1],
        "sequence_index": seq["first_index"] + index_in_seq,
        "sequence_id": seq["sequence_id"],
        "sequence_img_count": seq["img_count"],
    }


def _view_headings(heading: float, panorama: bool) -> list[float]:
    if panorama:
        return [heading - 157.5 + 45.0 * k for k in range(8)]
    return [heading - 90.0, heading, heading + 90.0]


def _street_view_row(
    config: SampleWorldConfig, rng: np.random.Generator, seq: dict[str, Any], *,
    index_in_seq: int, tile: Tile | None, lat: float, lon: float, heading: float,
    row: int, col: int, landscape: Landscape | None,
) -> dict[str, Any]:
    """Metadata, perception scores and hidden labels of one street view."""
    landcover = landscape.landcover if landscape is not None else None
    record = _metadata_row(config, rng, seq, index_in_seq, lat, lon, heading)
    lighting = lighting_at(record["hour"])
    if landscape is not None:
        affluence = float(landscape.affluence[row, col])
        urbanity = float(landscape.urbanity[row, col])
        label = dominant_class(landcover, row, col, radius=3)
    else:
        affluence, urbanity, label = float(rng.random()), float(rng.random()), 0
    sectors = _sectors(landcover, row, col, _view_headings(heading, seq["panorama"]), rng) \
        if landcover is not None else tuple(int(c) for c in rng.integers(1, 8, 8 if seq["panorama"] else 3))
    fractions = _class_fractions(landcover, row, col, rng=rng)
    record.update(_perception(fractions, affluence, seq["weather"], lighting, rng))
    record.update({
        "tile_id": tile.tile_id if tile is not None else "",
        "inside_tile": tile is not None,
        "row": row, "col": col,
        "landcover": label,
        "landcover_name": LandCover(label).name.lower() if label else "",
        "sectors": "-".join(str(c) for c in sectors),
        "affluence": round(affluence, 4), "urbanity": round(urbanity, 4),
        "weather": seq["weather"], "lighting_condition": lighting,
        "render_key": "",
    })
    return record


def build_world(config: SampleWorldConfig) -> SampleWorld:
    """Lay out tiles and street views; decide every street view's metadata and labels."""
    tiles = _tile_grid(config)
    rows: list[dict[str, Any]] = []
    for tile in tiles:
        landscape = tile.landscape(config)
        walkable = (landscape.landcover == LandCover.ROAD) & ~tile.nodata_mask(config)
        placement = _rng(config, *tile.key, _PLACEMENT)
        meta_rng = _rng(config, *tile.key, _METADATA)
        to_wgs84 = transformer(tile.crs.to_string(), "EPSG:4326")
        count = 0
        for sequence in _road_walks(placement, walkable, config.street_views_per_tile):
            seq = _sequence_metadata(config, meta_rng, tile.site, len(sequence))
            for index_in_seq, (row, col, heading) in enumerate(sequence):
                # A position inside the road pixel, with a little GPS scatter.
                x, y = tile.transform @ (col + placement.uniform(0.1, 0.9),
                                         row + placement.uniform(0.1, 0.9))
                lon, lat = to_wgs84.transform(x, y)
                record = _street_view_row(
                    config, meta_rng, seq, index_in_seq=index_in_seq, tile=tile, lat=lat,
                    lon=lon, heading=(heading + placement.normal(0.0, 4.0)) % 360.0,
                    row=row, col=col, landscape=landscape,
                )
                record["render_key"] = f"{tile.site_index}:{tile.tile_index}:{_RENDER_BASE + count}"
                rows.append(record)
                count += 1
    rows.extend(_outside_street_views(config, tiles))
    table = pd.DataFrame(rows)
    return SampleWorld(config=config, tiles=tiles, street_views=table)


def _outside_street_views(config: SampleWorldConfig, tiles: tuple[Tile, ...]) -> list[dict]:
    """Street views 1-3 km east of a site's last tile: inside no tile at all."""
    rows = []
    rng = _rng(config, _OUTSIDE_SITE, 0, _PLACEMENT)
    size_m = config.tile_size_px * config.pixel_size_m
    for k in range(config.street_views_outside):
        last = [t for t in tiles if t.site_index == k % len(config.sites)][-1]
        west, north = last.transform.c, last.transform.f
        for _ in range(100):
            x = west + size_m + rng.uniform(1000.0, 3000.0)
            y = north - rng.uniform(0.0, size_m)
            lon, lat = transformer(last.crs.to_string(), "EPSG:4326").transform(x, y)
            if not any(t.contains(lat, lon) for t in tiles):
                break
        else:
            raise RuntimeError("could not place a street view outside every tile")
        seq = _sequence_metadata(config, rng, last.site, 1)
        record = _street_view_row(
            config, rng, seq, index_in_seq=0, tile=None, lat=lat, lon=lon,
            heading=rng.uniform(0, 360), row=-1, col=-1, landscape=None,
        )
        record["render_key"] = f"{_OUTSIDE_SITE}:{k}:{_RENDER_BASE}"
        rows.append(record)
    return rows


def _render_image(config: SampleWorldConfig, record: pd.Series) -> Image.Image:
    site_key, tile_key, purpose = (int(v) for v in record["render_key"].split(":"))
    scene = StreetViewScene(
        sectors=tuple(int(c) for c in record["sectors"].split("-")),
        panorama=record["projection_type"] == "spherical",
        affluence=float(record["affluence"]),
        urbanity=float(record["urbanity"]),
        weather=record["weather"],
        lighting=record["lighting_condition"],
    )
    rng = _rng(config, site_key, tile_key, purpose)
    pixels = render_street_view(scene, int(record["width"]), int(record["height"]), rng)
    return Image.fromarray(pixels)


def write_sentinel2(world: SampleWorld, directory: Path) -> dict[str, Any]:
    """Write the world's tiles into ``directory`` as 12-band L2A GeoTIFFs (DN with the BOA
    offset); return provenance for the folder's manifest."""
    config = world.config
    for tile in world.tiles:
        reflectance = render_reflectance(
            _rng(config, *tile.key, _SPECTRA), tile.landscape(config), config.pixel_size_m
        )
        dn = reflectance_to_dn(reflectance, config.processing_baseline)
        dn[:, tile.nodata_mask(config)] = 0
        write_l2a_geotiff(
            directory / f"{tile.tile_id}.tif", dn, tile.crs, tile.transform,
            config.processing_baseline, block_size=_block_size(config),
            tags={"SPACECRAFT_NAME": "Sentinel-2B", "PRODUCT_TYPE": "S2MSI2A",
                  "DATATAKE_SENSING_DATE": config.acquisition_date,
                  "SOURCE": "gair sample world (synthetic)"},
        )
    return world.provenance() | {"tiles": len(world.tiles)}


def write_streetscapes(world: SampleWorld, directory: Path) -> dict[str, Any]:
    """Write the world's street views into ``directory`` as a Global Streetscapes release
    (tables and ``images/<start>_<end>/<uuid>.jpeg``); return provenance for its manifest."""
    config, table = world.config, world.street_views
    table.loc[:, list(METADATA_COMMON_ATTRIBUTES_COLUMNS)].to_csv(
        directory / "metadata_common_attributes.csv", index=False
    )
    table.loc[:, ["uuid", *PERCEPTION_ATTRIBUTES]].to_csv(
        directory / "perception.csv", index=False
    )
    _contextual(table).to_csv(directory / "contextual.csv", index=False)
    n_rows = len(table)
    for row_number, (_, record) in enumerate(table.iterrows(), start=1):
        folder = directory / "images" / image_folder_name(
            row_number, n_rows, config.images_per_folder
        )
        folder.mkdir(parents=True, exist_ok=True)
        _render_image(config, record).save(
            folder / f"{record['uuid']}{IMAGE_SUFFIX}", format="JPEG",
            quality=config.jpeg_quality,
        )
    return world.provenance() | {"street_views": n_rows}


def _contextual(table: pd.DataFrame) -> pd.DataFrame:
    """The eight contextual labels, as the dataset's classifiers name their values."""
    sunny = (table["weather"] == "clear") & (table["lighting_condition"] == "day")
    return pd.DataFrame({
        "uuid": table["uuid"], "source": table["source"], "orig_id": table["orig_id"],
        "glare": np.where(sunny & (table["heading"].astype(float) % 90 < 15), "yes", "no"),
        "lighting_condition": table["lighting_condition"],
        "pano_status": table["projection_type"] == "spherical",
        "platform": "driving surface",
        "quality": np.where(table["weather"] == "foggy", "slightly poor", "good"),
        "reflection": np.where(table["weather"] == "rainy", "yes", "no"),
        "view_direction": "front/back",
        "weather": table["weather"],
    }).loc[:, list(CONTEXTUAL_COLUMNS)]


TRUTH_COLUMNS = (
    "uuid", "tile_id", "inside_tile", "row", "col", "landcover", "landcover_name",
    "sectors", "affluence", "urbanity", "weather", "lighting_condition",
)
"""The per-view labels of the hidden truth (``street_views.csv``)."""


def write_truth(world: SampleWorld, directory: Path) -> dict[str, Any]:
    """Write the world's hidden truth into ``directory``: land-cover and field rasters per
    tile, per-view labels; return provenance for the folder's manifest."""
    config = world.config
    (directory / "landcover").mkdir()
    (directory / "fields").mkdir()
    block = _block_size(config)
    profile = {"driver": "GTiff", "compress": "deflate", "tiled": True, "blockxsize": block,
               "blockysize": block, "width": config.tile_size_px,
               "height": config.tile_size_px}
    for tile in world.tiles:
        landscape = tile.landscape(config)
        common = profile | {"crs": tile.crs, "transform": tile.transform}
        with rasterio.open(directory / "landcover" / f"{tile.tile_id}.tif", "w", count=1,
                           dtype="uint8", **common) as dst:
            dst.write(landscape.landcover, 1)
            dst.set_band_description(1, "landcover")
            dst.write_colormap(1, {int(c): (*LEGEND_RGB[c], 255) for c in LandCover})
        with rasterio.open(directory / "fields" / f"{tile.tile_id}.tif", "w", count=2,
                           dtype="float32", **common) as dst:
            dst.write(np.stack([landscape.affluence, landscape.urbanity]))
            dst.set_band_description(1, "affluence")
            dst.set_band_description(2, "urbanity")
    pd.DataFrame(
        [(int(c), c.name.lower(), *LEGEND_RGB[c]) for c in LandCover],
        columns=["code", "name", "red", "green", "blue"],
    ).to_csv(directory / "legend.csv", index=False)
    world.street_views.loc[:, list(TRUTH_COLUMNS)].to_csv(
        directory / "street_views.csv", index=False
    )
    return world.provenance() | {"tiles": len(world.tiles)}
