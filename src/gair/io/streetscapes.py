"""Global Streetscapes conventions: table columns and the image folder layout.

Tables are keyed by ``uuid, source, orig_id``; images are ``<uuid>.jpeg`` in folders of
at most N rows named ``<start>_<end>`` after the 1-based row range of the table
(the dataset's ``download_jpegs.py`` layout).
"""

from __future__ import annotations

import codecs
import csv
import logging
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from gair.io.images import MAX_IMAGE_PIXELS, ImageRejected, open_image
from gair.io.rejects import InputConfigurationError, ReadResult, rejects_frame

logger = logging.getLogger(__name__)

METADATA_COMMON_ATTRIBUTES_COLUMNS: tuple[str, ...] = (
    "uuid", "source", "orig_id", "lat", "lon", "datetime_local", "year", "month", "day",
    "hour", "width", "height", "heading", "projection_type", "hFoV", "vFoV",
    "sequence_index", "sequence_id", "sequence_img_count",
)
"""The exact columns of ``metadata_common_attributes.csv``, in order."""

STRING_COLUMNS: tuple[str, ...] = ("uuid", "source", "orig_id", "sequence_id")
"""Columns to read as strings: ids of up to 16 digits lose precision as floats."""

PERCEPTION_ATTRIBUTES: tuple[str, ...] = (
    "Safe", "Lively", "Wealthy", "Beautiful", "Boring", "Depressing",
)
"""Perception scores (0-10) predicted for every image, as the dataset names them."""

IMAGE_SUFFIX = ".jpeg"


def image_folder_name(row_number: int, n_rows: int, rows_per_folder: int) -> str:
    """Folder ``<start>_<end>`` holding the image of 1-based ``row_number`` of ``n_rows``."""
    if not 1 <= row_number <= n_rows:
        raise ValueError(f"row {row_number} is outside 1..{n_rows}")
    start = (row_number - 1) // rows_per_folder * rows_per_folder + 1
    end = min(start + rows_per_folder - 1, n_rows)
    return f"{start}_{end}"

REQUIRED_COLUMNS: tuple[str, ...] = ("uuid", "lat", "lon")
"""Columns without which a metadata table cannot be ingested at all."""

KEY_COLUMNS: tuple[str, ...] = ("uuid", "source", "orig_id")

SAFE_UUID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
"""A uuid is used as a file name: letters, digits, '-' and '_' only (no dots, no slashes)."""

_JPEG_SOI = b"\xff\xd8\xff"
_JPEG_EOI = b"\xff\xd9"


class StreetViewTable(ReadResult):
    """Accepted street views (EPSG:4326 points) and the rows rejected on the way."""

    @property
    def points(self) -> gpd.GeoDataFrame:
        return self.accepted


def index_images(images_dir: Path) -> tuple[dict[str, str], dict[str, list[str]]]:
    """``uuid -> path`` (relative to ``images_dir``) of ``<start>_<end>/<uuid>.jpeg`` and flat
    files, and ``uuid -> paths`` of the uuids found more than once (which file is the
    view's cannot be told, so neither is used).

    One ``scandir`` pass per folder: cheap even for millions of images.
    """
    found: dict[str, list[str]] = {}
    if not images_dir.is_dir():
        return {}, {}
    with os.scandir(images_dir) as top:
        entries = sorted(top, key=lambda e: e.name)
    for entry in entries:
        if entry.is_dir():
            with os.scandir(entry.path) as sub:
                for image in sorted(sub, key=lambda e: e.name):
                    if image.name.endswith(IMAGE_SUFFIX) and image.is_file():
                        found.setdefault(image.name[: -len(IMAGE_SUFFIX)], []).append(
                            f"{entry.name}/{image.name}")
        elif entry.name.endswith(IMAGE_SUFFIX) and entry.is_file():
            found.setdefault(entry.name[: -len(IMAGE_SUFFIX)], []).append(entry.name)
    unique = {uuid: paths[0] for uuid, paths in found.items() if len(paths) == 1}
    return unique, {uuid: paths for uuid, paths in found.items() if len(paths) > 1}


def check_jpeg(path: Path, decode: bool = False, max_pixels: int = MAX_IMAGE_PIXELS) -> str | None:
    """Why ``path`` is not a usable JPEG, or None if it is.

    Without ``decode``: the start-of-image and end-of-image markers and a header parse
    (catches truncation, non-JPEG content and a declared size over ``max_pixels``, at the
    cost of two small reads). With ``decode``: a full decode as well (about 28 ms for a
    2048-px image).
    """
    try:
        with path.open("rb") as handle:
            head = handle.read(3)
            handle.seek(max(path.stat().st_size - 64, 0))
            tail = handle.read()
        if head != _JPEG_SOI:
            return "not a JPEG (no start-of-image marker)"
        if _JPEG_EOI not in tail:
            return "truncated JPEG (no end-of-image marker)"
        with open_image(path, max_pixels) as image:
            if image.format != "JPEG":
                return f"not a JPEG ({image.format})"
            if decode:
                image.load()
    except ImageRejected as rejected:
        return str(rejected)
    except (OSError, SyntaxError, ValueError) as error:
        return f"unreadable JPEG: {error}"
    return None


_BYTE_ORDER_MARKS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
                     (codecs.BOM_UTF16_BE, "utf-16"))


def _text_encoding(path: Path, encoding: str) -> str:
    """``encoding``, or with ``"auto"`` the one a byte-order mark names, else UTF-8."""
    if encoding != "auto":
        return encoding
    with path.open("rb") as handle:
        head = handle.read(4096)
    for mark, name in _BYTE_ORDER_MARKS:
        if head.startswith(mark):
            return name
    if b"\x00" in head:
        raise InputConfigurationError(
            f"{path}: NUL bytes in the text (UTF-16 without a byte-order mark?); set the "
            "table encoding (ingest.streetscapes.encoding, e.g. utf-16-le)"
        )
    return "utf-8"


def read_csv_table(path: Path, encoding: str = "auto") -> tuple[pd.DataFrame, np.ndarray,
                                                                list[dict[str, Any]]]:
    """A CSV table as text, every row checked against the header.

    Returns the rows with as many fields as the header (all strings, columns named by
    it), their 1-based data row numbers, and the other rows as rejects: pandas would pad
    a short row, fail on a long one, or take a first column as the index when every row
    is one field longer than the header.
    """
    encoding = _text_encoding(path, encoding)
    rows, numbers, malformed = [], [], []
    try:
        with path.open(newline="", encoding=encoding) as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                raise InputConfigurationError(f"{path}: empty table (no header row)")
            duplicated = sorted({c for c in header if header.count(c) > 1})
            if duplicated:
                raise InputConfigurationError(f"{path}: duplicate column(s) {duplicated}")
            key = header.index("uuid") if "uuid" in header else 0
            for number, fields in enumerate(filter(None, reader), start=1):
                if len(fields) == len(header):
                    rows.append(fields)
                    numbers.append(number)
                else:
                    malformed.append({"file": str(path), "row": number,
                                      "item": fields[key] if key < len(fields) else "",
                                      "reason": "wrong field count",
                                      "detail": f"{len(fields)} fields, the header has "
                                                f"{len(header)}"})
    except UnicodeDecodeError:
        raw = path.read_bytes()  # only on this path: to say on which line it broke
        try:
            raw.decode(encoding)
        except UnicodeDecodeError as error:
            line = raw[: error.start].count(b"\n") + 1
            raise InputConfigurationError(
                f"{path}: line {line}: not {encoding} text ({error.reason}: "
                f"{raw[error.start : error.end]!r}); set the table encoding "
                "(ingest.streetscapes.encoding, e.g. latin-1 or cp1252)"
            ) from None
        raise
    except csv.Error as error:
        raise InputConfigurationError(f"{path}: not a CSV table ({error})") from error
    table = pd.DataFrame(rows, columns=header, dtype=object).astype(str) if rows else \
        pd.DataFrame({c: pd.Series(dtype=str) for c in header})
    return table, np.asarray(numbers, dtype=np.int64), malformed


def numbers_if_all(values: pd.Series) -> pd.Series:
    """Scores become numbers, labels stay strings: ``values`` (read as text) as numbers
    when every non-empty one parses, unchanged otherwise."""
    numeric = pd.to_numeric(values.replace("", np.nan), errors="coerce")
    return numeric if numeric.notna().sum() == (values != "").sum() else values


def _join_labels(points: pd.DataFrame, directory: Path, tables: list[str],
                 encoding: str) -> pd.DataFrame:
    """Left-join label tables on ``uuid`` (perception, contextual, per-label CSVs)."""
    for name in tables:
        path = directory / name
        if not path.is_file():
            logger.warning("Label table %s not found; its columns are left out", path)
            continue
        table, _, malformed = read_csv_table(path, encoding)
        if malformed:
            first = malformed[0]
            raise InputConfigurationError(
                f"{path}: data row {first['row']}: {first['reason']} ({first['detail']}); "
                f"{len(malformed)} such row(s) in this label table"
            )
        lowered = {c.lower(): c for c in table.columns}
        if "uuid" not in lowered:
            raise InputConfigurationError(f"{path}: required column missing: uuid")
        table = table.rename(columns={lowered["uuid"]: "uuid"})
        duplicated = table["uuid"].duplicated()
        if duplicated.any():
            logger.warning("%s: %d duplicate uuids; the first row of each is used",
                           path, int(duplicated.sum()))
            table = table.loc[~duplicated]
        new = [c for c in table.columns if c not in KEY_COLUMNS and c not in points.columns]
        converted = table.loc[:, ["uuid", *new]].copy()
        for column in new:
            converted[column] = numbers_if_all(converted[column])
        points = points.merge(converted, on="uuid", how="left")
    return points


def read_street_views(
    streetscapes_dir: Path,
    metadata_table: str = "metadata_common_attributes.csv",
    label_tables: tuple[str, ...] | list[str] = ("perception.csv", "contextual.csv"),
    images_dir: str = "images",
    image_check: str = "markers",
    require_images: bool = True,
    workers: int = 8,
    encoding: str = "auto",
    max_image_pixels: int = MAX_IMAGE_PIXELS,
) -> StreetViewTable:
    """Read a Global Streetscapes release into validated street-view points.

    Args:
        streetscapes_dir: the folder holding the tables and the images folder.
        metadata_table: the table with coordinates (``metadata_common_attributes.csv``).
        label_tables: tables joined on ``uuid`` when present (missing ones are logged).
        images_dir: images folder, relative to ``streetscapes_dir``; ``<start>_<end>/``
            sub-folders or flat.
        image_check: ``"markers"`` (cheap structural check), ``"decode"`` or ``"none"``.
        require_images: reject rows whose image is missing or unusable.
        workers: threads for the image checks.
        encoding: the tables' text encoding; ``"auto"`` reads a UTF-8/UTF-16 byte-order
            mark, else UTF-8 (other text is one error naming the file and row).
        max_image_pixels: an image declaring more pixels is rejected before decoding.

    Returns:
        Accepted points (EPSG:4326) with ``image_path`` relative to ``streetscapes_dir``,
        and a rejects table naming the file, row and reason of every other row.
    """
    path = Path(streetscapes_dir) / metadata_table
    if not path.is_file():
        raise InputConfigurationError(f"{path}: metadata table not found")
    table, row_numbers, malformed = read_csv_table(path, encoding)
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise InputConfigurationError(f"{path}: required column(s) missing: {', '.join(missing)}")
    read = len(table) + len(malformed)
    table.insert(0, "_row", row_numbers)
    reasons = pd.Series("", index=table.index, dtype=object)
    details = pd.Series("", index=table.index, dtype=object)

    def reject(mask: pd.Series, reason: str, detail: pd.Series | str = "") -> None:
        new = mask & (reasons == "")
        reasons[new] = reason
        details[new] = detail[new] if isinstance(detail, pd.Series) else detail

    coords = {}
    for axis, limit in (("lat", 90.0), ("lon", 180.0)):
        raw = table[axis].str.strip()
        value = pd.to_numeric(raw, errors="coerce")
        reject(raw.isin(["", "nan", "NaN", "NA", "null", "None"]), "missing lat/lon",
               f"{axis} is empty")
        reject(value.isna(), "lat/lon not a number", axis + "=" + raw)
        reject(value.abs() > limit, "lat/lon out of range", axis + "=" + raw)
        coords[axis] = value
    uuid = table["uuid"]
    reject(~uuid.str.fullmatch(SAFE_UUID), "unsafe uuid",
           "not usable as a file name: " + uuid)
    reject(uuid.duplicated(keep="first"), "duplicate uuid", "first seen earlier in the table")

    root = Path(streetscapes_dir)
    images, ambiguous = index_images(root / images_dir)
    image_path = pd.Series([images.get(u, "") for u in uuid], index=uuid.index, dtype=object)
    twice = uuid.isin(list(ambiguous))
    reject(twice, "image found twice",
           uuid.map(lambda u: " and ".join(ambiguous.get(u, []))).where(twice, ""))
    if require_images:
        reject(image_path == "", "image missing",
               f"no {images_dir}/<start>_<end>/<uuid>{IMAGE_SUFFIX} or flat file")
        to_check = (reasons == "") & (image_check != "none")
        if to_check.any():
            decode = image_check == "decode"
            with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
                problems = list(pool.map(
                    lambda rel: check_jpeg(root / images_dir / rel, decode, max_image_pixels),
                    image_path[to_check],
                ))
            problem = pd.Series(problems, index=image_path[to_check].index).reindex(table.index)
            bad = problem.notna()
            reject(bad, "corrupt image", problem.fillna(""))
    ok = reasons == ""
    rejects = rejects_frame(sorted(
        [*({"stage": "ingest/streetscapes", "file": str(path), "row": int(r),
            "item": u, "reason": reason, "detail": detail}
           for r, u, reason, detail in zip(table.loc[~ok, "_row"], uuid[~ok], reasons[~ok],
                                           details[~ok], strict=True)),
         *({"stage": "ingest/streetscapes"} | m for m in malformed)],
        key=lambda r: r["row"]))
    accepted = table.loc[ok].drop(columns="_row").copy()
    accepted["lat"], accepted["lon"] = coords["lat"][ok], coords["lon"][ok]
    found = image_path[ok]
    accepted["image_path"] = np.where(found == "", "", images_dir + "/" + found)
    accepted = _typed_metadata(accepted)
    accepted = _join_labels(accepted, root, list(label_tables), encoding)
    points = gpd.GeoDataFrame(
        accepted.reset_index(drop=True),
        geometry=gpd.points_from_xy(accepted["lon"], accepted["lat"]),
        crs="EPSG:4326",
    )
    return StreetViewTable(accepted=points, rejects=rejects, read=read)


def _typed_metadata(table: pd.DataFrame) -> pd.DataFrame:
    """Numbers as numbers, ids as strings, and ``datetime_local`` also as UTC."""
    for column in ("year", "month", "day", "hour", "sequence_index", "sequence_img_count"):
        if column in table:
            table[column] = pd.to_numeric(table[column], errors="coerce").astype("Int64")
    for column in ("width", "height", "heading", "hFoV", "vFoV"):
        if column in table:
            table[column] = pd.to_numeric(table[column], errors="coerce")
    if "datetime_local" in table:
        # Local time with its own UTC offset; offsets differ between rows, so compare in UTC.
        table["datetime_utc"] = pd.to_datetime(
            table["datetime_local"], utc=True, format="ISO8601", errors="coerce"
        )
    return table
