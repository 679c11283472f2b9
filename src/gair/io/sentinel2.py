"""Sentinel-2 L2A stacks and SAFE products: reading, checking, indexing and writing tiles
(the band facts and the reader's limits are in :mod:`gair.io.l2a`)."""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
import shapely
from affine import Affine
from pyproj import CRS, Geod
from pyproj.exceptions import CRSError, ProjError
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from gair.geo.crs import transformer
from gair.geo.utm import utm_crs_for
from gair.io.l2a import (
    CENTRE_WAVELENGTH_NM,
    GAIR_BANDS,
    GROUND_RESOLUTION_TOLERANCE,
    L2A_BANDS,
    MAX_SHARE_BELOW_OFFSET,
    MAX_TILE_PIXELS,
    NATIVE_RESOLUTION_M,
    NODATA_DN,
    QUANTIFICATION_VALUE,
    SATURATED_DN,
    WARP_RESAMPLING,
    boa_add_offset,
)
from gair.io.rejects import InputConfigurationError, ReadResult, rejects_frame

logger = logging.getLogger(__name__)


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


# --------------------------------------------------------------------------------------
# Tile index: what tiles there are, where, on which grid, with which bands and offset.
# --------------------------------------------------------------------------------------

STACK_SUFFIXES = (".tif", ".tiff")
_BASELINE_IN_NAME = re.compile(r"_N(\d{2})(\d{2})(?:_|\.|$)")
_BASELINE_IN_XML = re.compile(r"<PROCESSING_BASELINE>\s*(\d{2}\.\d{2})\s*</PROCESSING_BASELINE>")
_SAFE_BAND_FILE = re.compile(r"_(B\d[\dA])_(\d{2})m\.jp2$", re.IGNORECASE)

TILE_INDEX_COLUMNS = (
    "tile_id", "path", "format", "crs", "transform", "width", "height", "band_map",
    "source_crs", "warp_resampling", "sensing_time",
    "processing_baseline", "boa_add_offset", "offset_source", "valid_fraction",
    "blue_below_1000",
)
"""``crs``/``transform``/``width``/``height`` are the grid the tile is read on (metres);
``source_crs`` is the file's own CRS when that grid is a warp onto the local UTM zone
(``warp_resampling`` says how), empty when the file is read as it is. ``sensing_time`` is
the scene's acquisition time (UTC, ISO 8601) where the file says it. ``blue_below_1000``:
the share of valid B02 pixels whose digital number is below 1000 (the data check on the
BOA offset)."""


class TileRejected(Exception):
    """A tile that cannot be used, with the reason that goes to the rejects table."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


class TileIndex(ReadResult):
    """Accepted tiles (footprints in EPSG:4326) and the files rejected on the way."""

    @property
    def tiles(self) -> gpd.GeoDataFrame:
        return self.accepted


def discover_tile_sources(sentinel2_dir: Path) -> tuple[list[Path], list[dict[str, str]]]:
    """Stacked GeoTIFF/COG files and SAFE granules (``*.SAFE/GRANULE/*``) under a folder,
    and the entries that cannot be sources, with their reasons.

    Symbolic links to folders are followed (each real folder once, so a link loop ends);
    a link to nothing, and a second path to a file already found, are rejected.
    """
    root = Path(sentinel2_dir)
    if not root.is_dir():
        raise InputConfigurationError(f"{root}: Sentinel-2 folder not found")
    stacks, granules, skipped = [], [], []
    seen_folders: set[str] = set()
    for folder, subfolders, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen_folders:
            subfolders.clear()
            logger.warning("%s: a link to %s, which is read once", folder, real)
            continue
        seen_folders.add(real)
        subfolders.sort()
        here = Path(folder)
        if here.name.endswith(".SAFE"):
            granules += sorted(g for g in (here / "GRANULE").glob("*") if g.is_dir())
            subfolders.clear()  # a granule's JP2 files are read as one source
            continue
        for name in sorted(files):
            path = here / name
            if path.suffix.lower() not in STACK_SUFFIXES:
                continue
            if not path.exists():
                skipped.append({"item": path, "reason": "broken link",
                                "detail": f"points to {os.readlink(path)}, which does not exist"})
                continue
            stacks.append(path)
    # Of several paths to one file, the file's own path (not a link) is the tile.
    by_file: dict[str, list[Path]] = {}
    for path in stacks:
        by_file.setdefault(os.path.realpath(path), []).append(path)
    stacks = []
    for real_path, paths in by_file.items():
        kept = min(paths, key=lambda p: (str(p) != real_path, str(p)))
        stacks.append(kept)
        skipped += [{"item": p, "reason": "same file as another tile",
                     "detail": f"{kept.relative_to(root).as_posix()} (read once)"}
                    for p in paths if p != kept]
    if not stacks and not granules:
        raise InputConfigurationError(
            f"{root}: no Sentinel-2 tiles found (looked for *.tif, *.tiff and *.SAFE/GRANULE/*)"
        )
    return sorted(stacks) + sorted(granules), skipped


EARTH_ENGINE_HARMONIZED = "COPERNICUS_S2_SR_HARMONIZED"
"""Earth Engine's harmonised L2A collection, as its exports' ``LICENSE`` tag names it. It has
already removed the +1000 of baseline 04.00 and later, yet its exports still carry
``PROCESSING_BASELINE`` (e.g. 05.11) and ``BOA_ADD_OFFSET_Bx = -1000``."""


def _boa_offset(tags: dict[str, str], names: Iterable[str], requested: str,
                default: str) -> tuple[str, int, str]:
    """The processing baseline, the BOA offset to remove, and where they came from.

    ``requested`` other than ``"auto"`` applies to every file. Otherwise, in this order: an
    Earth Engine harmonised export (offset 0 whatever its tags say), the file's
    ``BOA_ADD_OFFSET`` tag (written with the data by this project), its
    ``PROCESSING_BASELINE`` tag, a product name (``_Nxxyy_``) in ``PRODUCT_ID`` or in
    ``names``, the default.
    """
    if requested != "auto":
        return requested, boa_add_offset(requested), "configuration"
    baseline = tags.get("PROCESSING_BASELINE")
    if EARTH_ENGINE_HARMONIZED in tags.get("LICENSE", ""):
        return (baseline or default, 0,
                "Earth Engine S2_SR_HARMONIZED export (offset already removed)")
    if baseline and "BOA_ADD_OFFSET" in tags:
        offset = int(float(tags["BOA_ADD_OFFSET"]))
        if offset not in (0, -1000):
            raise ValueError(f"BOA_ADD_OFFSET tag {tags['BOA_ADD_OFFSET']!r} is neither 0 "
                             "nor -1000")
        return baseline, offset, "file tags"
    if baseline:
        return baseline, boa_add_offset(baseline), "file tags"
    for name in (tags.get("PRODUCT_ID", ""), *names):
        match = _BASELINE_IN_NAME.search(name)
        if match:
            found = f"{match.group(1)}.{match.group(2)}"
            return found, boa_add_offset(found), "product name"
    return default, boa_add_offset(default), "configuration default"


_PRODUCT_TIME = re.compile(r"_MSIL2A_(\d{8}T\d{6})_")


def sensing_time(tags: dict[str, str], names: Iterable[str] = ()) -> str | None:
    """The scene's acquisition time as ISO 8601 UTC, or None when nothing says it: the
    ``SENSING_TIME`` tag (``acquire`` writes it), Earth Engine's ``system-time_start``
    (milliseconds), ``DATATAKE_SENSING_DATE``, or the product name's sensing time."""
    value = None
    if tags.get("SENSING_TIME"):
        value = pd.Timestamp(tags["SENSING_TIME"])
    elif tags.get("system-time_start"):
        value = pd.Timestamp(int(float(tags["system-time_start"])), unit="ms")
    elif tags.get("DATATAKE_SENSING_DATE"):
        value = pd.Timestamp(tags["DATATAKE_SENSING_DATE"])
    else:
        for name in (tags.get("PRODUCT_ID", ""), *names):
            match = _PRODUCT_TIME.search(name)
            if match:
                value = pd.Timestamp(match.group(1))
                break
    if value is None:
        return None
    value = value.tz_localize("UTC") if value.tzinfo is None else value.tz_convert("UTC")
    return value.isoformat()






_WGS84 = Geod(ellps="WGS84")


def ground_pixel_size_m(crs: Any, transform: Affine, width: int,
                        height: int) -> tuple[float, float]:
    """Metres on the ground (WGS84 geodesic) across one pixel at the tile's centre: along a
    row and down a column."""
    col, row = width // 2, height // 2
    xs, ys = zip(transform @ (col, row), transform @ (col + 1, row), transform @ (col, row + 1),
                 strict=True)
    lon, lat = transformer(str(crs), "EPSG:4326").transform(list(xs), list(ys))
    return (float(_WGS84.inv(lon[0], lat[0], lon[1], lat[1])[2]),
            float(_WGS84.inv(lon[0], lat[0], lon[2], lat[2])[2]))


def _unit_of(crs: Any) -> str:
    unit = CRS.from_user_input(crs).axis_info[0].unit_name
    return "m" if unit in ("metre", "meter") else unit


def read_grid(crs: Any, transform: Affine, width: int, height: int, pixel_size_m: float,
              resampling: str = "nearest",
              tolerance: float = GROUND_RESOLUTION_TOLERANCE) -> dict[str, Any]:
    """The grid a tile is read on, as tile-record fields, or :class:`TileRejected`.

    A tile on a north-up grid of ``pixel_size_m`` metres is read as it is. Any other tile
    whose ground resolution is about ``pixel_size_m`` (GAIR's own tiles are EPSG:4326 at
    8.98e-5 degrees) is read through a warp (``resampling``) onto the ``pixel_size_m`` grid
    of the UTM zone of its centre, aligned to multiples of ``pixel_size_m``: pairing, query
    coordinates and patches then stay in metres, on the convention the oracle tests prove.
    """
    if crs is None:
        raise TileRejected("no CRS", "the file has no coordinate reference system")
    if transform.b != 0 or transform.d != 0:
        raise TileRejected("rotated grid", f"transform {tuple(transform)[:6]}")
    if transform.a <= 0 or transform.e >= 0:
        raise TileRejected("not north-up", f"transform {tuple(transform)[:6]}")
    try:
        unit = _unit_of(crs)
        along_row, down_column = ground_pixel_size_m(crs, transform, width, height)
    except (CRSError, ProjError, RasterioError, ValueError) as error:
        raise TileRejected("bad metadata", f"{crs} cannot be measured on the ground "
                           f"({error})") from error
    if abs(max(along_row, down_column) / pixel_size_m - 1) > tolerance:
        raise TileRejected(
            "wrong pixel size",
            f"{transform.a:.6g} x {-transform.e:.6g} {unit} (about {along_row:.1f} x "
            f"{down_column:.1f} m on the ground at the tile's centre), expected about "
            f"{pixel_size_m:g} m")
    record = {"crs": CRS.from_user_input(crs).to_string(), "transform": list(transform)[:6],
              "width": width, "height": height, "source_crs": "", "warp_resampling": ""}
    if unit == "m" and np.isclose(transform.a, pixel_size_m) and np.isclose(-transform.e,
                                                                            pixel_size_m):
        return record
    if resampling not in WARP_RESAMPLING:
        raise InputConfigurationError(f"warp resampling {resampling!r} is not one of "
                                      f"{', '.join(WARP_RESAMPLING)}")
    west, north = transform.c, transform.f
    east, south = west + transform.a * width, north + transform.e * height
    centre_lon, centre_lat = transformer(str(crs), "EPSG:4326").transform(
        (west + east) / 2, (north + south) / 2)
    utm = utm_crs_for(centre_lat, centre_lon)
    left, bottom, right, top = transform_bounds(crs, utm, west, south, east, north,
                                                densify_pts=21)
    x0 = np.floor(left / pixel_size_m) * pixel_size_m
    y0 = np.ceil(top / pixel_size_m) * pixel_size_m
    return record | {
        "crs": utm.to_string(),
        "transform": list(Affine(pixel_size_m, 0, x0, 0, -pixel_size_m, y0))[:6],
        "width": int(np.ceil((right - x0) / pixel_size_m)),
        "height": int(np.ceil((y0 - bottom) / pixel_size_m)),
        "source_crs": record["crs"], "warp_resampling": resampling,
    }


@contextmanager
def on_grid(src: rasterio.DatasetReader, record: dict[str, Any]) -> Iterator[Any]:
    """``src`` as the tile record's grid shows it: itself, or warped (0 stays nodata). The
    warp transforms every pixel centre to within 1e-6 of a source pixel (GDAL's default
    approximation, 1/8 pixel, moves some centres across a source pixel's edge, taking the
    neighbour's value; rasterio refuses a tolerance of exactly 0 with a given grid)."""
    if not record.get("source_crs"):
        yield src
        return
    with WarpedVRT(src, crs=record["crs"], transform=Affine(*record["transform"][:6]),
                   width=int(record["width"]), height=int(record["height"]),
                   resampling=Resampling[record["warp_resampling"]],
                   src_nodata=NODATA_DN, nodata=NODATA_DN, tolerance=1e-6) as vrt:
        yield vrt


def check_stack(src: rasterio.DatasetReader, band_order: Sequence[str], pixel_size_m: float,
                max_pixels: int = MAX_TILE_PIXELS, resampling: str = "nearest",
                tolerance: float = GROUND_RESOLUTION_TOLERANCE) -> dict[str, Any]:
    """Refuse (:class:`TileRejected`) a stacked GeoTIFF that cannot be read as L2A digital
    numbers of the bands ``band_order`` names on a north-up grid of about ``pixel_size_m``
    metres on the ground: the one check for ingest and for embedding patches. Returns the
    grid it is read on (:func:`read_grid`)."""
    if src.width * src.height > max_pixels:
        raise TileRejected(
            "tile too large",
            f"declares {src.width} x {src.height} px, more than the limit of {max_pixels:,}",
        )
    if src.count != len(band_order):
        raise TileRejected("wrong band count", f"{src.count} bands, expected "
                           f"{len(band_order)} ({' '.join(band_order)})")
    if src.dtypes[0] != "uint16":
        hint = ("; reflectance? GAIR reads uint16 digital numbers (reflectance x 10000, "
                "+ 1000 from processing baseline 04.00)" if src.dtypes[0][0] == "f" else "")
        raise TileRejected("not uint16 digital numbers", f"dtype {src.dtypes[0]}{hint}")
    return read_grid(src.crs, src.transform, src.width, src.height, pixel_size_m, resampling,
                     tolerance)


def _open(path: Path) -> rasterio.DatasetReader:
    try:
        return rasterio.open(path)
    except RasterioError as error:
        raise TileRejected("unreadable file", str(error)) from error


@contextmanager
def open_stack(path: Path, band_order: Sequence[str], pixel_size_m: float,
               max_pixels: int = MAX_TILE_PIXELS, resampling: str = "nearest",
               tolerance: float = GROUND_RESOLUTION_TOLERANCE) -> Iterator[Any]:
    """A stacked GeoTIFF passed through :func:`check_stack`, opened on the grid it is read
    on (:func:`on_grid`), or :class:`TileRejected` (``unreadable file`` when it does not
    open)."""
    with _open(path) as src:
        grid = check_stack(src, band_order, pixel_size_m, max_pixels, resampling, tolerance)
        with on_grid(src, grid) as dataset:
            yield dataset


def _stack_record(path: Path, root: Path, options: dict[str, Any]) -> dict[str, Any]:
    band_order = options["band_order"]
    with _open(path) as src:
        grid = check_stack(src, band_order, options["pixel_size_m"], options["max_pixels"],
                           options["warp_resampling"], options["ground_resolution_tolerance"])
        tags = src.tags()
    rel = path.relative_to(root).as_posix()
    pb, offset, source = _boa_offset(tags, [path.name], options["processing_baseline"],
                                     options["default_processing_baseline"])
    return grid | {
        "tile_id": rel, "path": rel, "format": "GTiff",
        "band_map": {b: [rel, band_order.index(b) + 1, options["pixel_size_m"]]
                     for b in GAIR_BANDS},
        "sensing_time": sensing_time(tags, [path.name]),
        "processing_baseline": pb, "boa_add_offset": offset, "offset_source": source,
    }


def _safe_record(granule: Path, root: Path, options: dict[str, Any]) -> dict[str, Any]:
    """A SAFE granule: per-band JP2 files, each band at its finest native resolution."""
    files: dict[str, tuple[Path, int]] = {}
    for jp2 in sorted((granule / "IMG_DATA").rglob("*.jp2")):
        match = _SAFE_BAND_FILE.search(jp2.name)
        if match:
            band, res = match.group(1).upper(), int(match.group(2))
            if band in NATIVE_RESOLUTION_M and (band not in files or res < files[band][1]):
                files[band] = (jp2, res)
    missing = [b for b in GAIR_BANDS if b not in files]
    if missing:
        raise TileRejected("SAFE granule missing bands", ", ".join(missing))
    reference = files["B02"][0]
    try:
        src = rasterio.open(reference)
    except RasterioError as error:
        raise TileRejected("unreadable file", f"{reference.name}: {error}") from error
    with src:
        grid = check_stack(src, ("B02",), options["pixel_size_m"], options["max_pixels"],
                           tolerance=options["ground_resolution_tolerance"])
    if grid["source_crs"]:
        raise TileRejected("SAFE granule off its grid",
                           f"{reference.name} is not on a {options['pixel_size_m']:g} m grid")
    safe = granule.parent.parent
    tags = {}
    metadata = safe / "MTD_MSIL2A.xml"
    if metadata.is_file():
        match = _BASELINE_IN_XML.search(metadata.read_text(errors="replace"))
        if match:
            tags["PROCESSING_BASELINE"] = match.group(1)
    pb, offset, source = _boa_offset(tags, [safe.name], options["processing_baseline"],
                                     options["default_processing_baseline"])
    return grid | {
        "tile_id": granule.relative_to(root).as_posix(),
        "path": granule.relative_to(root).as_posix(), "format": "SAFE",
        "band_map": {b: [files[b][0].relative_to(root).as_posix(), 1, float(files[b][1])]
                     for b in GAIR_BANDS},
        "sensing_time": sensing_time({}, [safe.name]),
        "processing_baseline": pb, "boa_add_offset": offset,
        "offset_source": "MTD_MSIL2A.xml" if source == "file tags" else source,
    }


def band_map_of(record: dict[str, Any]) -> dict[str, list]:
    """A tile record's band map (stored as JSON text in the GeoParquet index)."""
    band_map = record["band_map"]
    return json.loads(band_map) if isinstance(band_map, str) else band_map


def tile_records(tiles: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Tile index rows by ``tile_id``, band maps parsed once (not once per patch read)."""
    return {r["tile_id"]: r | {"band_map": band_map_of(r)}
            for r in pd.DataFrame(tiles).drop(columns="geometry", errors="ignore")
            .to_dict("records")}


def read_window(root: Path, record: dict[str, Any], window: Window,
                bands: Sequence[str] = GAIR_BANDS) -> np.ndarray:
    """Digital numbers (len(bands), h, w) uint16 of a tile window on its 10 m grid.

    Outside the tile reads as 0 (nodata). Coarser bands of a SAFE granule are brought
    onto the 10 m grid by nearest neighbour (each 20 m pixel covers 2 x 2 exactly).
    """
    band_map = band_map_of(record)
    pixel = float(record["transform"][0])
    out = np.zeros((len(bands), int(window.height), int(window.width)), dtype=np.uint16)
    groups: dict[tuple[str, float], list[tuple[int, int]]] = {}
    for position, band in enumerate(bands):
        path, index, resolution = band_map[band]
        groups.setdefault((path, float(resolution)), []).append((position, int(index)))
    for (path, resolution), members in groups.items():
        scale = pixel / resolution
        source_window = Window(window.col_off * scale, window.row_off * scale,
                               window.width * scale, window.height * scale)
        with rasterio.open(Path(root) / path) as src, on_grid(src, record) as dataset:
            if dataset is src:
                data = src.read(
                    [index for _, index in members], window=source_window,
                    out_shape=(len(members), out.shape[1], out.shape[2]),
                    boundless=True, fill_value=0, resampling=Resampling.nearest,
                )
            else:  # a warped grid is read within its bounds (no boundless reads of a VRT)
                data = _read_within(dataset, [index for _, index in members], window)
        out[[position for position, _ in members]] = data
    return out


def _read_within(dataset: Any, indexes: list[int], window: Window) -> np.ndarray:
    """A window of whole pixels, 0 where it hangs over the dataset's edge."""
    out = np.zeros((len(indexes), int(window.height), int(window.width)), dtype=np.uint16)
    col0, row0 = max(int(window.col_off), 0), max(int(window.row_off), 0)
    col1 = min(int(window.col_off + window.width), dataset.width)
    row1 = min(int(window.row_off + window.height), dataset.height)
    if col1 > col0 and row1 > row0:
        out[:, row0 - int(window.row_off) : row1 - int(window.row_off),
            col0 - int(window.col_off) : col1 - int(window.col_off)] = dataset.read(
            indexes, window=Window(col0, row0, col1 - col0, row1 - row0))
    return out


def to_reflectance(dn: np.ndarray, boa_add_offset: int) -> tuple[np.ndarray, np.ndarray]:
    """Harmonised reflectance x 10000 (uint16, offset removed, clipped at 0) and validity.

    A pixel is nodata where any band is 0; nodata is masked before the offset is applied.
    """
    valid = (dn != NODATA_DN).all(axis=0)
    harmonised = np.clip(dn.astype(np.int32) + boa_add_offset, 0, SATURATED_DN)
    harmonised[:, ~valid] = 0
    return harmonised.astype(np.uint16), valid


def read_patch(root: Path, record: dict[str, Any], row_off: int, col_off: int,
               size: int) -> tuple[np.ndarray, np.ndarray]:
    """A square patch of a tile as GAIR reads it: reflectance x 10000 of its 10 bands
    (uint16, BOA offset removed) and the validity mask."""
    dn = read_window(root, record, Window(int(col_off), int(row_off), size, size), GAIR_BANDS)
    return to_reflectance(dn, int(record["boa_add_offset"]))


STRIP_BYTES = 64 << 20
"""Digital numbers read at once while verifying a tile (10 bands x 10980 px: 305 rows)."""


def _valid_fraction(root: Path, record: dict[str, Any], verify: str) -> tuple[float, float]:
    """Share of pixels with data in every band, and the share of valid blue (B02) pixels
    whose digital number is below 1000. Reading every strip also proves the file reads
    (``verify='full'``), or its first band, B02 (``'mask'``)."""
    bands = GAIR_BANDS if verify == "full" else GAIR_BANDS[:1]
    height, width = int(record["height"]), int(record["width"])
    if verify == "header":
        window = Window(0, 0, width, height)
        scale = max(1, max(height, width) // 512)
        blue = read_window_decimated(root, record, window, scale)
        valid = blue != NODATA_DN
        return float(valid.mean()), float((blue[valid] < 1000).mean()) if valid.any() else 0.0
    valid = dark = 0
    strip = max(1, STRIP_BYTES // (width * len(bands) * 2))  # memory bounded by any width
    for row in range(0, height, strip):
        rows = min(strip, height - row)
        dn = read_window(root, record, Window(0, row, width, rows), bands)
        mask = (dn != NODATA_DN).all(axis=0)
        valid += int(mask.sum())
        dark += int((dn[0][mask] < 1000).sum())
    return valid / (height * width), dark / valid if valid else 0.0


def read_window_decimated(root: Path, record: dict[str, Any], window: Window, factor: int):
    """First GAIR band of a window, read at 1/factor resolution (overviews when present)."""
    path, index, _ = band_map_of(record)[GAIR_BANDS[0]]
    with rasterio.open(Path(root) / path) as file, on_grid(file, record) as src:
        scale = src.width / int(record["width"])
        return src.read(index, window=Window(window.col_off * scale, window.row_off * scale,
                                             window.width * scale, window.height * scale),
                        out_shape=(max(1, int(window.height) // factor),
                                   max(1, int(window.width) // factor)))




def check_offset(record: dict[str, Any], max_share: float = MAX_SHARE_BELOW_OFFSET) -> str | None:
    """Why the tile's BOA offset contradicts its data (None if it does not): removing
    1000 from data that never had it turns dark pixels into 0, i.e. nodata."""
    share = float(record["blue_below_1000"])
    if int(record["boa_add_offset"]) != -1000 or share <= max_share:
        return None
    return (f"{share:.1%} of valid blue (B02) pixels are below 1000, yet the offset taken "
            f"from the {record['offset_source']} (processing baseline "
            f"{record['processing_baseline']}) removes 1000 from every pixel; scenes that carry "
            f"the offset have almost none below it. Already harmonised (e.g. an Earth Engine "
            f"S2_SR_HARMONIZED export without its LICENSE tag)? Set "
            f"ingest.sentinel2.processing_baseline to '03.00' (no offset) for such tiles")


def tile_footprint(record: dict[str, Any]) -> shapely.Polygon:
    """The tile's outline in EPSG:4326, edges densified so curvature survives reprojection."""
    transform = Affine(*record["transform"])
    west, north = transform.c, transform.f
    east = west + transform.a * int(record["width"])
    south = north + transform.e * int(record["height"])
    outline = shapely.segmentize(shapely.box(west, south, east, north),
                                 max_segment_length=(east - west) / 16)
    xs, ys = np.asarray(outline.exterior.coords).T
    lon, lat = transformer(record["crs"], "EPSG:4326").transform(xs, ys)
    return shapely.Polygon(np.column_stack([lon, lat]))


def _index_one(task: tuple[Path, Path, dict[str, Any]]) -> dict[str, Any]:
    source, root, options = task
    try:
        if source.suffix.lower() in STACK_SUFFIXES:
            record = _stack_record(source, root, options)
        else:
            record = _safe_record(source, root, options)
        try:
            record["valid_fraction"], record["blue_below_1000"] = _valid_fraction(
                root, record, options["verify"])
        except RasterioError as error:
            cause = f" ({error.__cause__})" if error.__cause__ else ""
            raise TileRejected("read failed", f"{error}{cause}") from error
        if record["valid_fraction"] == 0:
            raise TileRejected("all nodata", "every pixel is 0 in some band")
        contradiction = (check_offset(record, options["max_share_below_offset"])
                         if options["offset_check"] != "off" else None)
        if contradiction and options["offset_check"] == "reject":
            raise TileRejected("BOA offset contradicts the data", contradiction)
        if contradiction:
            logger.warning("Tile %s: %s", source, contradiction)
        record["geometry"] = tile_footprint(record)
        return {"ok": record}
    except TileRejected as rejected:
        return {"rejected": (rejected.reason, rejected.detail)}
    except ValueError as error:  # e.g. an unparseable processing baseline
        return {"rejected": ("bad metadata", str(error))}


def read_tile_index(
    sentinel2_dir: Path,
    band_order: Sequence[str] = L2A_BANDS,
    processing_baseline: str = "auto",
    default_processing_baseline: str = "05.09",
    pixel_size_m: float = 10.0,
    verify: str = "full",
    workers: int = 1,
    max_tile_pixels: int = MAX_TILE_PIXELS,
    warp_resampling: str = "nearest",
    ground_resolution_tolerance: float = GROUND_RESOLUTION_TOLERANCE,
    offset_check: str = "reject",
    max_share_below_offset: float = MAX_SHARE_BELOW_OFFSET,
) -> TileIndex:
    """Index the Sentinel-2 tiles of a folder: stacked GeoTIFF/COG files and SAFE granules.

    Args:
        sentinel2_dir: folder searched recursively.
        band_order: the bands of a stacked file, in file order (files' own band
            descriptions are often meaningless, so they are not trusted).
        processing_baseline: ``"auto"`` (file tags, ``MTD_MSIL2A.xml``, or ``_Nxxyy_`` in
            the product name) or a baseline such as ``"05.09"`` that applies to all.
        default_processing_baseline: used by ``"auto"`` when a file does not say.
        pixel_size_m: the expected grid (GAIR reads 10 m).
        verify: ``"full"`` reads every band to prove the file and measure valid data,
            ``"mask"`` the first band only, ``"header"`` a decimated first band.
        workers: processes for indexing (1 runs inline).
        max_tile_pixels: a tile declaring more pixels is rejected before any is read.
        warp_resampling: how a tile not on a ``pixel_size_m`` metric grid is warped onto
            the local UTM zone's (:func:`read_grid`); recorded per tile.
        ground_resolution_tolerance: relative difference allowed between a tile's ground
            resolution and ``pixel_size_m``.
        offset_check: ``"reject"`` or ``"warn"`` about a tile whose BOA offset contradicts
            its data (:func:`check_offset`), or ``"off"``.
        max_share_below_offset: the check's threshold.
    """
    root = Path(sentinel2_dir)
    unknown = [b for b in GAIR_BANDS if b not in band_order]
    if unknown:
        raise InputConfigurationError(f"band_order lacks GAIR band(s): {', '.join(unknown)}")
    sources, skipped = discover_tile_sources(root)
    options = {"band_order": list(band_order), "processing_baseline": processing_baseline,
               "default_processing_baseline": default_processing_baseline,
               "pixel_size_m": pixel_size_m, "verify": verify, "max_pixels": max_tile_pixels,
               "warp_resampling": warp_resampling,
               "ground_resolution_tolerance": ground_resolution_tolerance,
               "offset_check": offset_check, "max_share_below_offset": max_share_below_offset}
    tasks = [(source, root, options) for source in sources]
    if workers > 1 and len(tasks) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(_index_one, tasks))
    else:
        results = [_index_one(task) for task in tasks]
    records, rejects = [], []
    outcomes = [(source, result.get("ok"), result.get("rejected"))
                for source, result in zip(sources, results, strict=True)]
    outcomes += [(entry["item"], None, (entry["reason"], entry["detail"])) for entry in skipped]
    for source, record, rejected in outcomes:
        if record is not None:
            records.append(record)
        else:
            reason, detail = rejected
            logger.warning("Rejected tile %s: %s %s", source, reason, detail)
            rejects.append({"stage": "ingest/sentinel2", "file": str(source), "row": None,
                            "item": source.relative_to(root).as_posix(), "reason": reason,
                            "detail": detail})
    frame = pd.DataFrame(records, columns=[*TILE_INDEX_COLUMNS, "geometry"])
    frame["band_map"] = frame["band_map"].map(json.dumps)
    tiles = gpd.GeoDataFrame(frame, geometry="geometry", crs="EPSG:4326")
    return TileIndex(accepted=tiles, rejects=rejects_frame(rejects), read=len(outcomes))
