"""Readers of real downstream benchmarks, each returning what it accepted and a rejects
table with the reason for everything else (counts add up: see :mod:`gair.io.rejects`).

- EuroSAT-MS: ``<root>/<Class>/<Class>_<n>.tif``, 13-band uint16 GeoTIFFs in the order
  B01..B08, B09, B10, B11, B12, B8A; GAIR's 10 bands are picked by position in that order
  (the files carry no band names).
- Global Streetscapes per-label CSVs: ``<dir>/<label>.csv`` with ``uuid`` and the label.
- A generic points table: ``lat``, ``lon`` (optionally ``split``) and target columns.
- A generic street-view table: ``uuid`` and target columns.

What to predict is a :class:`Targets`: numeric columns for ridge regression and class
columns for classification, stated rather than guessed, since class codes are often
integers.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
from rasterio.errors import RasterioError

from gair.evaluation.probes import SPLITS
from gair.io.l2a import GAIR_BANDS
from gair.io.rejects import InputConfigurationError, ReadResult, rejects_frame
from gair.io.streetscapes import SAFE_UUID

EUROSAT_BANDS: tuple[str, ...] = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08",
                                  "B09", "B10", "B11", "B12", "B8A")
"""Band order of EuroSAT-MS files (B8A last, unlike the L2A products)."""

EUROSAT_SIZE_PX = 64
"""EuroSAT images are 64 x 64 pixels (640 m at 10 m)."""

EMPTY_VALUES = frozenset({"", "nan", "NaN", "NA", "N/A", "n/a", "<NA>", "null", "NULL", "None"})
"""Values that mean "no value" in the CSVs these readers meet (pandas' usual missing words)."""


@dataclass(frozen=True)
class Targets:
    """What a table is probed for: ``regress`` columns (numbers, one ridge probe for all
    of them) and ``classify`` columns (labels, one classification probe each)."""

    regress: tuple[str, ...] = ()
    classify: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.regress and not self.classify:
            raise InputConfigurationError("no targets: give `regress` or `classify` columns")
        both = set(self.regress) & set(self.classify)
        if both:
            raise InputConfigurationError(f"targets both regressed and classified: {sorted(both)}")

    @property
    def columns(self) -> tuple[str, ...]:
        return (*self.regress, *self.classify)


@dataclass(frozen=True)
class ImageClassification:
    """Images [N, bands, S, S], their class names and files, and the rejects."""

    images: np.ndarray
    labels: np.ndarray
    files: list[str]
    rejects: pd.DataFrame
    read: int

    def report(self) -> dict:
        return ReadResult(pd.DataFrame({"file": self.files}), self.rejects, self.read).report()


def read_eurosat_ms(root: Path, band_order: Sequence[str] = EUROSAT_BANDS,
                    max_per_class: int | None = None,
                    size_px: int = EUROSAT_SIZE_PX) -> ImageClassification:
    """EuroSAT-MS reduced to GAIR's 10 bands (digital numbers x 10000 of TOA reflectance,
    no offset). Files with another band count or size, or that fail to read, are rejected;
    folders whose name starts with ``.`` or ``_`` (``.ipynb_checkpoints``, ``__MACOSX``)
    are not classes."""
    root = Path(root)
    classes = sorted(p.name for p in root.iterdir()
                     if p.is_dir() and not p.name.startswith((".", "_"))) if root.is_dir() else []
    if not classes:
        raise InputConfigurationError(f"{root}: no class folders (EuroSAT_MS/<Class>/*.tif)")
    missing = [b for b in GAIR_BANDS if b not in band_order]
    if missing:
        raise InputConfigurationError(f"band order {list(band_order)} lacks {missing}")
    pick = [list(band_order).index(b) + 1 for b in GAIR_BANDS]
    images, labels, files, rejects = [], [], [], []
    read = 0
    for name in classes:
        for path in sorted((root / name).glob("*.tif"))[:max_per_class]:
            read += 1
            relative = str(path.relative_to(root))
            try:
                with rasterio.open(path) as src:
                    if src.count != len(band_order):
                        rejects.append({"file": relative, "reason": "wrong band count",
                                        "detail": f"{src.count} bands, {len(band_order)} expected"})
                        continue
                    if (src.height, src.width) != (size_px, size_px):
                        rejects.append({"file": relative, "reason": "wrong size",
                                        "detail": f"{src.height} x {src.width} px where "
                                                  f"{size_px} x {size_px} expected"})
                        continue
                    images.append(src.read(pick))
            except RasterioError as error:
                rejects.append({"file": relative, "reason": "unreadable", "detail": str(error)})
                continue
            labels.append(name)
            files.append(relative)
    rejected = rejects_frame({"stage": "benchmark/eurosat", "item": r["file"], "row": None, **r}
                             for r in rejects)
    if not images:
        reasons = rejected["reason"].value_counts().to_dict()
        raise InputConfigurationError(f"{root}: no usable EuroSAT-MS image among {read} "
                                      f"files (rejected: {reasons})")
    return ImageClassification(np.stack(images), np.array(labels, dtype=object), files,
                               rejected, read)


def read_label_csvs(directory: Path, targets: Targets) -> ReadResult:
    """Global Streetscapes per-label CSVs joined on ``uuid``, one item per uuid.

    A target ``<label>`` is read from ``<label>.csv`` (file and column names matched
    without regard to case; a file with one column besides ``uuid``, such as
    ``places365.csv``'s ``place``, gives that column), ``<file>:<column>`` from a column
    of a wider file (``segmentation:Road``). A uuid is accepted when every target has
    a usable value for it; otherwise it is rejected once, with every reason.
    """
    directory = Path(directory)
    values, problems, tables = [], defaultdict(list), {}
    for target in targets.columns:
        path = _label_file(directory, target)
        if path not in tables:  # several targets may be columns of one (large) file
            tables[path] = _read_csv(path)
        column = _label_column(path, tables[path].columns, target)
        table = tables[path][["uuid", column]].rename(columns={column: target})
        kept, bad = _check_rows(table, path, "uuid", _only(targets, target), "benchmark/labels")
        for reject in bad:
            problems[reject["item"]].append(reject | {"target": target})
        values.append(kept.set_index("uuid")[target])
    joined = pd.concat(values, axis=1, join="outer")
    for uuid in joined.index[joined.isna().any(axis=1)]:
        absent = [t for t in joined.columns if pd.isna(joined.loc[uuid, t])
                  and not any(r["target"] == t for r in problems[uuid])]
        if absent:
            problems[uuid].append({"reason": "missing labels", "target": None,
                                   "detail": "no " + ", ".join(absent)})
    rejects = [{"stage": "benchmark/labels", "item": uuid,
                "file": ", ".join(dict.fromkeys(r["file"] for r in found if r.get("file"))),
                "reason": "; ".join(dict.fromkeys(r["reason"] for r in found)),
                "detail": "; ".join(_describe(r) for r in found)}
               for uuid, found in problems.items()]
    accepted = joined[~joined.index.isin(list(problems))]
    accepted = accepted.rename_axis("uuid").reset_index()
    return ReadResult(accepted, rejects_frame(rejects), len(accepted) + len(rejects))


def _describe(reject: dict) -> str:
    where = f"{reject['file']} row {reject['row']}: " if reject.get("file") else ""
    return where + (reject.get("detail") or reject["reason"])


def _only(targets: Targets, column: str) -> Targets:
    """``targets`` restricted to one of its columns."""
    if column in targets.regress:
        return Targets(regress=(column,))
    return Targets(classify=(column,))


def _label_file(directory: Path, target: str) -> Path:
    """The file a label target names (see :func:`read_label_csvs`)."""
    stem = target.partition(":")[0]
    files = {p.stem.lower(): p for p in directory.glob("*.csv")} if directory.is_dir() else {}
    if stem.lower() not in files:
        raise InputConfigurationError(f"{directory / (stem + '.csv')}: label file missing")
    return files[stem.lower()]


def _label_column(path: Path, columns: Sequence[str], target: str) -> str:
    """The column of ``path`` a label target names (see :func:`read_label_csvs`)."""
    stem, _, column = target.partition(":")
    header = [c for c in columns if c != "uuid"]
    by_name = {c.lower(): c for c in header}
    if column:
        found = by_name.get(column.lower())
    else:
        found = by_name.get(stem.lower()) or (header[0] if len(header) == 1 else None)
    if found is None:
        raise InputConfigurationError(
            f"{path}: no column for target {target!r} among {header}; "
            f"name one as '{stem}:<column>'")
    return found


def _read_csv(path: Path) -> pd.DataFrame:
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    uuid = [c for c in table.columns if c.lower() == "uuid"]
    return table.rename(columns={uuid[0]: "uuid"}) if uuid else table


def _check_rows(table: pd.DataFrame, path: Path, key: str | None, targets: Targets,
                stage: str) -> tuple[pd.DataFrame, list[dict]]:
    """The usable rows of ``table`` (regression targets as floats) and a reject for each
    other row: an unsafe or duplicate ``key``, an empty target, a regression target that
    is not a finite number. Every row with a duplicate key is rejected: which value is
    meant cannot be told."""
    missing = [c for c in ((key,) if key else ()) + targets.columns if c not in table.columns]
    if missing:
        raise InputConfigurationError(f"{path}: required columns missing: {missing} "
                                      f"(columns: {list(table.columns)})")
    bad: dict[int, tuple[str, str]] = {}  # row -> reason, detail
    if key is not None:
        keys = table[key].astype(str)
        unsafe = ~keys.str.fullmatch(SAFE_UUID)
        duplicate = keys.duplicated(keep=False) & ~unsafe
        bad |= {i: (f"unsafe {key}", f"{key}={keys[i]!r}") for i in table.index[unsafe]}
        bad |= {i: (f"duplicate {key}", f"{key}={keys[i]!r} on several rows")
                for i in table.index[duplicate]}
    for column in targets.columns:
        text = table[column].astype(str).str.strip()
        empty = text.isin(EMPTY_VALUES)
        bad |= {i: (f"empty {column}", f"{column}={table.loc[i, column]!r}")
                for i in table.index[empty] if i not in bad}
        if column in targets.regress:
            number = pd.to_numeric(text.where(~empty), errors="coerce")
            invalid = ~empty & ~np.isfinite(number.to_numpy(np.float64))
            bad |= {i: (f"non-numeric {column}", f"{column}={table.loc[i, column]!r}")
                    for i in table.index[invalid] if i not in bad}
    rejects = [{"stage": stage, "file": Path(path).name, "row": i + 1,
                "item": str(table.loc[i, key]) if key else str(i + 1), "reason": reason,
                "detail": detail}
               for i, (reason, detail) in sorted(bad.items())]
    kept = table.drop(index=list(bad))
    for column in targets.regress:
        kept[column] = pd.to_numeric(kept[column].str.strip()).astype(np.float64)
    return kept, rejects


def read_points_table(path: Path, targets: Targets) -> ReadResult:
    """A points table: ``lat``, ``lon`` (degrees, WGS 84), ``targets`` and optionally
    ``split`` (train, val or test). Rows with a missing, non-numeric or out-of-range
    coordinate, an unknown split or an unusable target are rejected. ``accepted`` is a
    GeoDataFrame in EPSG:4326."""
    table = _read_csv(path)
    for column in ("lat", "lon"):
        if column not in table.columns:
            raise InputConfigurationError(f"{path}: required columns missing: [{column!r}]")
    kept, rejects = _check_rows(table, path, None, targets, "benchmark/points")
    lat = pd.to_numeric(kept["lat"], errors="coerce")
    lon = pd.to_numeric(kept["lon"], errors="coerce")
    reasons = pd.Series("", index=kept.index)
    reasons[~np.isfinite(lat) | ~np.isfinite(lon)] = "missing or non-numeric lat/lon"
    reasons[(reasons == "") & ((lat.abs() > 90) | (lon.abs() > 180))] = "lat/lon out of range"
    if "split" in kept.columns:
        reasons[(reasons == "") & ~kept["split"].isin(SPLITS)] = "unknown split"
    for i in reasons.index[reasons != ""]:
        detail = (f"split={kept.loc[i, 'split']!r}, not one of {list(SPLITS)}"
                  if reasons[i] == "unknown split"
                  else f"lat={kept.loc[i, 'lat']}, lon={kept.loc[i, 'lon']}")
        rejects.append({"stage": "benchmark/points", "file": Path(path).name, "row": i + 1,
                        "item": str(i + 1), "reason": reasons[i], "detail": detail})
    ok = reasons == ""
    accepted = kept[ok].assign(lat=lat[ok], lon=lon[ok]).reset_index(drop=True)
    points = gpd.GeoDataFrame(accepted, geometry=gpd.points_from_xy(accepted["lon"],
                                                                     accepted["lat"]),
                              crs="EPSG:4326")
    rejects.sort(key=lambda r: r["row"])
    return ReadResult(points, rejects_frame(rejects), len(points) + len(rejects))


def read_street_view_table(path: Path, targets: Targets) -> ReadResult:
    """A street-view table: ``uuid`` and ``targets`` (other columns are ignored: a view's
    split is its pair's); rows with an unsafe or duplicate uuid or an unusable target are
    rejected."""
    kept, rejects = _check_rows(_read_csv(path), path, "uuid", targets,
                                "benchmark/street_views")
    accepted = kept[["uuid", *targets.columns]].reset_index(drop=True)
    return ReadResult(accepted, rejects_frame(rejects), len(accepted) + len(rejects))


def random_splits(n: int, fractions: dict[str, float], seed: int) -> np.ndarray:
    """Split names for ``n`` items drawn at random in the given fractions (for benchmarks
    that come without a split or a place, such as EuroSAT)."""
    from gair.geo.pairing import split_at

    position = np.random.default_rng(seed).permutation(n) / max(n, 1)
    return np.array(list(fractions), dtype=object)[split_at(position, fractions)]


def block_splits(lat: np.ndarray, lon: np.ndarray, block_deg: float,
                 fractions: dict[str, float], seed: int) -> np.ndarray:
    """Split names by spatial blocks of ``block_deg`` degrees (a block is in one split),
    for point tables without a ``split`` column."""
    from gair.geo.pairing import assign_splits

    row = np.floor((np.asarray(lat, np.float64) + 90.0) / block_deg).astype(np.int64)
    col = np.floor((np.asarray(lon, np.float64) + 180.0) / block_deg).astype(np.int64)
    blocks = (row << 32) | col
    return np.array(list(fractions), dtype=object)[assign_splits(blocks, fractions, seed)]
