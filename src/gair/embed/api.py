"""Embed your own locations, street views and Sentinel-2 patches with a trained GAIR.

Every function takes a :class:`~gair.embed.FrozenGAIR` (``gair.load_model(path)``),
checks its inputs against the checkpoint's preprocessing contract, runs in batches with a
progress bar on the model's device, and returns a table with one array column per embedding
(a GeoDataFrame in EPSG:4326 where the rows have places; street views from files have none);
:func:`write_geoparquet` writes one atomically. Coordinates are
always (lat, lon) in degrees, in that order.
"""

from __future__ import annotations

import csv
import logging
import math
import re
from collections.abc import Sequence
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import rasterio
import rasterio.warp
from rasterio.errors import CRSError, RasterioError
from tqdm.auto import tqdm

from gair.contract import ContractError, LocationContract
from gair.embed.model import FrozenGAIR
from gair.geo.pairing import pair_points
from gair.io.directories import replacing_file
from gair.io.images import MAX_IMAGE_PIXELS, ImageRejected, load_rgb
from gair.io.l2a import L2A_BANDS, MAX_TILE_PIXELS
from gair.io.rejects import InputConfigurationError, ReadResult, rejects_frame
from gair.io.sentinel2 import (
    TileRejected,
    open_stack,
    read_patch,
    read_tile_index,
    tile_records,
    to_reflectance,
)

logger = logging.getLogger(__name__)

LOCATION_COLUMNS = ("lat", "lon")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_DECIMAL_COMMA = re.compile(r"[+-]?\d+,\d+")


def read_location_table(path: str | Path) -> pd.DataFrame:
    """A table of locations read strictly from a CSV (UTF-8, comma-separated, a header
    line) or Parquet file: named columns including ``lat`` and ``lon`` in degrees, at least
    one row, every row with all its fields and a (lat, lon) in range.

    Anything else raises :class:`~gair.io.rejects.InputConfigurationError` naming the file,
    the first bad data row (1-based, header excluded) and why: a lenient reader would shift
    the columns of a headerless file or of a row with an extra field, and read ``48,7`` as
    text. Other columns are kept (as text, from a CSV)."""
    path = Path(path)
    if not path.is_file():
        raise InputConfigurationError(f"{path}: no such file")
    table = _read_parquet(path) if path.suffix.lower() == ".parquet" else _read_csv(path)
    if table.empty:
        raise InputConfigurationError(f"{path}: no data rows")
    return table


def _read_csv(path: Path) -> pd.DataFrame:
    lines: list[tuple[int, list[str]]] = []
    try:
        with path.open(newline="", encoding="utf-8-sig") as file:
            reader = csv.reader(file, strict=True)
            lines = [(reader.line_num, fields) for fields in reader if fields]  # blank lines skipped
    except UnicodeDecodeError as error:
        raise InputConfigurationError(f"{path}: not UTF-8 text (byte {error.start}: "
                                      f"{error.reason})") from error
    except csv.Error as error:
        raise InputConfigurationError(f"{path}: line {reader.line_num}: {error}") from error
    if not lines:
        raise InputConfigurationError(f"{path}: empty file (expected a header line such as "
                                      "lat,lon, then one row per location)")
    (_, header), rows = lines[0], lines[1:]
    names = [name.strip() for name in header]
    _check_header(path, names)
    if not rows:
        raise InputConfigurationError(f"{path}: no data rows (only a header)")
    positions = [names.index(c) for c in LOCATION_COLUMNS]
    problems, values = [], []
    for number, (line, fields) in enumerate(rows, start=1):
        where = f"row {number} (line {line})"
        if len(fields) != len(names):
            split = len(fields) > len(names) and not any("." in f for f in fields)
            hint = (" (a decimal comma, as in 48,7, splits a value in two: write 48.7)"
                    if split else "")
            problems.append(f"{where}: {len(fields)} fields where the header names "
                            f"{len(names)} ({','.join(names)}){hint}")
            continue
        row_problems = [problem for column, position in zip(LOCATION_COLUMNS, positions, strict=True)
                        if (problem := _coordinate_text_problem(column, fields[position]))]
        if row_problems:
            problems.append(f"{where}: {'; '.join(row_problems)}")
        values.append(fields)
    _raise_first(path, problems)
    table = pd.DataFrame(values, columns=names)
    return table.astype(dict.fromkeys(LOCATION_COLUMNS, np.float64))


def _check_header(path: Path, names: list[str]) -> None:
    if all(_NUMBER.fullmatch(name) or _DECIMAL_COMMA.fullmatch(name) for name in names):
        raise InputConfigurationError(
            f"{path}: no header: the first line ({','.join(names)}) holds values; it must "
            "name the columns, e.g. lat,lon")
    unnamed = [i for i, name in enumerate(names, start=1) if not name]
    if unnamed:
        raise InputConfigurationError(
            f"{path}: header: column(s) {unnamed} have no name (a table written with its "
            "index? write it with index=False)")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise InputConfigurationError(f"{path}: header: column(s) {repeated} named twice")
    missing = [c for c in LOCATION_COLUMNS if c not in names]
    if missing:
        hint = (" (columns must be separated by commas)"
                if len(names) == 1 and any(s in names[0] for s in ";\t") else "")
        raise InputConfigurationError(
            f"{path}: header {','.join(names)} lacks column(s) {', '.join(missing)} "
            f"(lat, lon in degrees){hint}")


def _coordinate_text_problem(column: str, text: str) -> str | None:
    value = text.strip()
    if not value:
        return f"{column} is empty"
    if _DECIMAL_COMMA.fullmatch(value):
        return f"{column} {text!r} has a decimal comma: write {value.replace(',', '.')}"
    if not _NUMBER.fullmatch(value):
        return f"{column} {text!r} is not a number"
    return _coordinate_problem(column, float(value))


def _coordinate_problem(column: str, value: float) -> str | None:
    limit = 90 if column == "lat" else 180
    if not math.isfinite(value):
        return f"{column} is {value} (missing or not finite)"
    if abs(value) > limit:
        swapped = " (were (lon, lat) given?)" if column == "lat" else ""
        return f"{column} {value:g} outside [-{limit}, {limit}]{swapped}"
    return None


def _raise_first(path: Path, problems: list[str]) -> None:
    if problems:
        more = f" (and {len(problems) - 1} more bad row(s))" if len(problems) > 1 else ""
        raise InputConfigurationError(f"{path}: {problems[0]}{more}")


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        table = pd.read_parquet(path)
    except pa.ArrowException as error:
        raise InputConfigurationError(f"{path}: not a readable Parquet file ({error})") from error
    missing = [c for c in LOCATION_COLUMNS if c not in table.columns]
    if missing:
        raise InputConfigurationError(f"{path}: columns {list(map(str, table.columns))} lack "
                                      f"{', '.join(missing)} (lat, lon in degrees)")
    for column in LOCATION_COLUMNS:
        dtype = table[column].dtype
        if not pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype):
            raise InputConfigurationError(f"{path}: column {column} holds {dtype}, not numbers")
    coordinates = table[list(LOCATION_COLUMNS)].to_numpy(dtype=np.float64, na_value=np.nan)
    problems = []
    for index in np.flatnonzero(~(np.isfinite(coordinates).all(axis=1)
                                  & (np.abs(coordinates) <= (90, 180)).all(axis=1))):
        row_problems = [problem for column, value in zip(LOCATION_COLUMNS, coordinates[index],
                                                         strict=True)
                        if (problem := _coordinate_problem(column, float(value)))]
        problems.append(f"row {index + 1}: {'; '.join(row_problems)}")
    _raise_first(path, problems)
    return table.astype(dict.fromkeys(LOCATION_COLUMNS, np.float64))


def _latlon(table: pd.DataFrame | np.ndarray, lat: str, lon: str) -> np.ndarray:
    """(lat, lon) [N, 2] float64, checked as a whole before any batching (so a bad row is
    named by its index in the table, not in its batch)."""
    if isinstance(table, pd.DataFrame):
        missing = [c for c in (lat, lon) if c not in table.columns]
        if missing:
            raise ContractError(f"location table lacks column(s) {missing} (lat, lon in degrees)")
        table = table[[lat, lon]]
    try:
        latlon = (table.to_numpy(dtype=np.float64, na_value=np.nan)
                  if isinstance(table, pd.DataFrame) else np.asarray(table, dtype=np.float64))
    except (TypeError, ValueError) as error:
        raise ContractError(f"locations are not numbers ({error}); read CSV files with "
                            "gair.embed.api.read_location_table") from error
    if latlon.shape == (2,):
        latlon = latlon.reshape(1, 2)
    if latlon.ndim != 2 or latlon.shape[1] != 2:  # never reshaped: that shifts columns
        raise ContractError(f"locations must be [N, 2] (lat, lon), got shape {latlon.shape}")
    LocationContract.check(latlon)
    return latlon


def _frame(latlon: np.ndarray, columns: dict[str, object]) -> gpd.GeoDataFrame:
    frame = pd.DataFrame({"lat": latlon[:, 0], "lon": latlon[:, 1]} | columns)
    return gpd.GeoDataFrame(frame, geometry=gpd.points_from_xy(frame["lon"], frame["lat"]),
                            crs="EPSG:4326")


def _arrays(values: np.ndarray) -> list[np.ndarray]:
    return list(np.asarray(values, dtype=np.float32))


def embed_locations(model: FrozenGAIR, table: pd.DataFrame | np.ndarray, lat: str = "lat",
                    lon: str = "lon", batch_size: int = 8192) -> gpd.GeoDataFrame:
    """Location embeddings of a table with ``lat``/``lon`` columns (or an [N, 2] array of
    (lat, lon)); a (lon, lat)-swapped table is refused where |lat| > 90."""
    latlon = _latlon(table, lat, lon)
    parts = [model.encode_locations(latlon[i : i + batch_size], batch_size)
             for i in tqdm(range(0, len(latlon), batch_size), desc="embed locations",
                           unit="batch", disable=None)]
    embeddings = np.concatenate(parts) if parts else np.zeros((0, model.model.config.embed_dim))
    return _frame(latlon, {"location": _arrays(embeddings)})


def _reject(stage: str, path: Path, rejected: ImageRejected | TileRejected) -> dict[str, object]:
    logger.warning("rejected %s: %s (%s)", path, rejected.reason, rejected.detail)
    return {"stage": stage, "file": str(path), "row": None, "item": path.name,
            "reason": rejected.reason, "detail": rejected.detail}


def embed_street_views_with_rejects(model: FrozenGAIR, paths: Sequence[str | Path],
                                    batch_size: int = 64,
                                    max_image_pixels: int = MAX_IMAGE_PIXELS) -> ReadResult:
    """Embeddings of the street-view image files that can be read (see
    :func:`embed_street_views`), and a rejects table (``gair.io.rejects``) of those that
    cannot, each with its reason: one bad file does not stop the others."""
    return _embed_street_views(model, paths, batch_size, max_image_pixels, skip=True)


def embed_street_views(model: FrozenGAIR, paths: Sequence[str | Path], batch_size: int = 64,
                       max_image_pixels: int = MAX_IMAGE_PIXELS) -> pd.DataFrame:
    """Embeddings of street-view image files (any format PIL reads, EXIF orientation
    applied, turned to RGB; a file declaring more than ``max_image_pixels`` is refused
    before decoding): a table of ``path`` and ``sv``. The first file that cannot be used
    raises :class:`~gair.io.images.ImageRejected` naming it;
    :func:`embed_street_views_with_rejects` skips and lists such files instead."""
    return _embed_street_views(model, paths, batch_size, max_image_pixels, skip=False).accepted


def _embed_street_views(model: FrozenGAIR, paths: Sequence[str | Path], batch_size: int,
                        max_image_pixels: int, skip: bool) -> ReadResult:
    paths = [Path(p) for p in paths]
    embedded, embeddings, rejects = [], [], []
    for start in tqdm(range(0, len(paths), batch_size), desc="embed street views",
                      unit="batch", disable=None):
        images = []
        for path in paths[start : start + batch_size]:
            try:
                images.append(load_rgb(path, max_image_pixels))
            except ImageRejected as rejected:
                if not skip:
                    raise ImageRejected(rejected.reason, f"{path} ({rejected.detail})") from rejected
                rejects.append(_reject("embed/street_views", path, rejected))
                continue
            embedded.append(path)
        if images:
            embeddings.append(model.encode_street_views(images))
    values = (np.concatenate(embeddings) if embeddings
              else np.zeros((0, model.model.config.embed_dim), np.float32))
    table = pd.DataFrame({"path": [str(p) for p in embedded], "sv": _arrays(values)})
    return ReadResult(accepted=table, rejects=rejects_frame(rejects), read=len(paths))


def embed_rs_patches_with_rejects(model: FrozenGAIR, geotiffs: Sequence[str | Path],
                                  band_order: Sequence[str] = L2A_BANDS,
                                  boa_add_offset: int = -1000, batch_size: int = 64,
                                  max_tile_pixels: int = MAX_TILE_PIXELS) -> ReadResult:
    """Embeddings of the GeoTIFF patches that pass the ingest step's checks (see
    :func:`embed_rs_patches`), and a rejects table (``gair.io.rejects``) of those that do
    not, each with the reason ingest gives: one bad file does not stop the others."""
    return _embed_rs_patches(model, geotiffs, band_order, boa_add_offset, batch_size,
                             max_tile_pixels, skip=True)


def embed_rs_patches(model: FrozenGAIR, geotiffs: Sequence[str | Path],
                     band_order: Sequence[str] = L2A_BANDS, boa_add_offset: int = -1000,
                     batch_size: int = 64,
                     max_tile_pixels: int = MAX_TILE_PIXELS) -> gpd.GeoDataFrame:
    """Global RS embeddings of Sentinel-2 patches given as GeoTIFFs of stacked bands in
    ``band_order`` (uint16 digital numbers; ``boa_add_offset`` -1000 for processing
    baseline >= 04.00, 0 before). GAIR's bands are picked by name. A file is checked as the
    ingest step checks a tile (:func:`gair.io.sentinel2.check_stack`: band count, uint16,
    a CRS, a north-up grid of the contract's pixel size, at most ``max_tile_pixels``) and
    must hold some valid pixels. Returns ``path``, ``rs_global`` and the patch centre. The
    first file that fails raises :class:`~gair.io.sentinel2.TileRejected` naming it;
    :func:`embed_rs_patches_with_rejects` skips and lists such files instead."""
    return _embed_rs_patches(model, geotiffs, band_order, boa_add_offset, batch_size,
                             max_tile_pixels, skip=False).accepted


def _embed_rs_patches(model: FrozenGAIR, geotiffs: Sequence[str | Path],
                      band_order: Sequence[str], boa_add_offset: int, batch_size: int,
                      max_tile_pixels: int, skip: bool) -> ReadResult:
    rs = model.contract.rs
    missing = [b for b in rs.bands if b not in band_order]
    if missing:
        raise ContractError(f"band order {list(band_order)} lacks {missing}; the model "
                            f"expects {list(rs.bands)}")
    paths = [Path(p) for p in geotiffs]
    embedded, centres, pooled, rejects = [], [], [], []
    for start in tqdm(range(0, len(paths), batch_size), desc="embed RS patches",
                      unit="batch", disable=None):
        patches = []  # one batch in memory at a time: a whole tile can be a "patch"
        for path in paths[start : start + batch_size]:
            try:
                patches.append(_read_rs_patch(path, band_order, rs.bands, rs.ground_resolution_m,
                                              boa_add_offset, max_tile_pixels))
            except TileRejected as rejected:
                if not skip:
                    raise TileRejected(rejected.reason, f"{path} ({rejected.detail})") from rejected
                rejects.append(_reject("embed/rs_patches", path, rejected))
                continue
            embedded.append(path)
        centres += [centre for _, _, centre in patches]
        pooled += _encode_rs_by_shape(model, [(r, v) for r, v, _ in patches])
    latlon = np.array(centres, dtype=np.float64).reshape(-1, 2)
    table = _frame(latlon, {"path": [str(p) for p in embedded], "rs_global": _arrays(
        np.stack(pooled) if pooled else np.zeros((0, model.model.config.embed_dim)))})
    return ReadResult(accepted=table, rejects=rejects_frame(rejects), read=len(paths))


def _read_rs_patch(path: Path, band_order: Sequence[str], bands: Sequence[str],
                   pixel_size_m: float, boa_add_offset: int, max_pixels: int,
                   ) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """Reflectance x 10000 of ``bands``, its validity and the (lat, lon) centre of one
    stacked GeoTIFF, or :class:`TileRejected` with the reason ingest gives."""
    with open_stack(path, band_order, pixel_size_m, max_pixels) as src:
        try:
            raw = src.read([list(band_order).index(b) + 1 for b in bands])
        except RasterioError as error:
            cause = f" ({error.__cause__})" if error.__cause__ else ""
            raise TileRejected("read failed", f"{error}{cause}") from error
        reflectance, valid = to_reflectance(raw, boa_add_offset)
        if not valid.any():
            raise TileRejected("all nodata", "every pixel is 0 in some band")
        x, y = src.xy(src.height / 2 - 0.5, src.width / 2 - 0.5)
        try:
            lon, lat = rasterio.warp.transform(src.crs, "EPSG:4326", [x], [y])
        except (CRSError, RasterioError) as error:
            raise TileRejected("bad metadata", f"{src.crs} cannot be transformed to "
                               f"EPSG:4326 ({error})") from error
    return reflectance, valid, (lat[0], lon[0])


def _encode_rs_by_shape(model: FrozenGAIR, patches: list[tuple[np.ndarray, np.ndarray]],
                        ) -> list[np.ndarray]:
    """Global embeddings of ``patches`` in their order, encoded in groups of one shape
    (files of different sizes cannot be stacked)."""
    pooled: list[np.ndarray] = [np.empty(0)] * len(patches)
    for shape in dict.fromkeys(r.shape for r, _ in patches):
        group = [i for i, (r, _) in enumerate(patches) if r.shape == shape]
        _, glob = model.encode_rs(np.stack([patches[i][0] for i in group]),
                                  np.stack([patches[i][1] for i in group]))
        for i, embedding in zip(group, glob, strict=True):
            pooled[i] = embedding
    return pooled


def encode_tile_patches(model: FrozenGAIR, patches: pd.DataFrame, tiles: pd.DataFrame,
                        sentinel2_dir: str | Path, patch_size: int,
                        batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Token grids [N, C, h, w] and global embeddings [N, D] of square patches of tiles.

    ``patches`` has ``tile_id``, ``row_off`` and ``col_off`` (the patch's first pixel);
    ``tiles`` is the ingest tile index. Patches are cut with the pairing step's reader, so
    they match the training patches exactly.
    """
    records = tile_records(tiles)
    rows = list(patches[["tile_id", "row_off", "col_off"]].itertuples(index=False))
    if not rows:
        raise ValueError("no patches to embed")
    grids, pooled = [], []
    for start in tqdm(range(0, len(rows), batch_size), desc="embed RS patches", unit="batch",
                      disable=None):
        read = [_read_tile_patch(sentinel2_dir, records[t], int(r), int(c), patch_size)
                for t, r, c in rows[start : start + batch_size]]
        grid, glob = model.encode_rs(np.stack([r for r, _ in read]), np.stack([v for _, v in read]))
        grids.append(grid)
        pooled.append(glob)
    return np.concatenate(grids), np.concatenate(pooled)


def _read_tile_patch(root: str | Path, record: dict, row_off: int, col_off: int,
                     size: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        return read_patch(root, record, row_off, col_off, size)
    except RasterioError as error:  # damaged after indexing, or indexed from its header only
        cause = f" ({error.__cause__})" if error.__cause__ else ""
        raise InputConfigurationError(f"{Path(root) / record['path']}: read failed "
                                      f"({error}{cause})") from error


def embed_rs_at_points(model: FrozenGAIR, table: pd.DataFrame | np.ndarray,
                       sentinel2_dir: str | Path, tiles: pd.DataFrame | None = None,
                       lat: str = "lat", lon: str = "lon", band_order: Sequence[str] = L2A_BANDS,
                       processing_baseline: str = "auto", batch_size: int = 64,
                       ) -> gpd.GeoDataFrame:
    """RS embeddings at (lat, lon) points over a folder of Sentinel-2 tiles (indexed here
    with ``band_order`` and ``processing_baseline``, or given as the ingest step's tile
    index ``tiles``): each point's patch is cut exactly as the pairing step cuts it, and the
    result holds the patch's global embedding ``rs_global``, the NILI-queried embedding
    at the point ``rs_query``, and the point's ``location`` embedding, with ``tile_id``,
    ``patch_id``, ``qx`` and ``qy``. Points outside every tile keep their row, with no
    tile and no RS embeddings."""
    latlon = _latlon(table, lat, lon)
    locations = embed_locations(model, latlon)
    root = Path(sentinel2_dir)
    if tiles is None:
        index = read_tile_index(root, band_order=band_order,
                                processing_baseline=processing_baseline, verify="header")
        if index.tiles.empty:
            reasons = ", ".join(sorted(set(index.rejects["reason"])))
            raise InputConfigurationError(f"{root}: none of the {index.read} tiles could be "
                                          f"used ({reasons})")
        tiles = index.tiles
    size = model.contract.rs.patch_size_px
    if len(tiles):
        placed = pair_points(latlon[:, 0], latlon[:, 1], tiles, size, 1.0, {"all": 1.0}, 0)
    else:  # no tile: every point is outside
        placed = pd.DataFrame({"tile_id": None, "patch_id": None, "qx": np.nan, "qy": np.nan},
                              index=range(len(latlon)))
    inside = np.flatnonzero(placed["tile_id"].notna().to_numpy())
    rs_global = np.full((len(latlon),), None, dtype=object)
    rs_query = np.full((len(latlon),), None, dtype=object)
    if len(inside):
        rows = placed.iloc[inside]
        grid, glob = encode_tile_patches(model, rows, tiles, root, size, batch_size)
        query = model.query_rs(grid, rows[["qx", "qy"]].to_numpy(np.float32))
        rs_global[inside], rs_query[inside] = list(glob), list(query)
    columns = {"tile_id": placed["tile_id"], "patch_id": placed["patch_id"],
               "qx": placed["qx"], "qy": placed["qy"], "rs_global": list(rs_global),
               "rs_query": list(rs_query), "location": list(locations["location"])}
    return _frame(latlon, columns)


def write_geoparquet(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write a table of embeddings as (Geo)Parquet atomically (a partial file never stays)."""
    with replacing_file(path) as staging:
        frame.to_parquet(staging)
    return Path(path)


__all__ = [
    "embed_locations",
    "embed_rs_at_points",
    "embed_rs_patches",
    "embed_rs_patches_with_rejects",
    "embed_street_views",
    "embed_street_views_with_rejects",
    "encode_tile_patches",
    "read_location_table",
    "write_geoparquet",
]
