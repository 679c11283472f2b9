"""Readers of real downstream benchmarks, each returning what it accepted and a rejects
table with the reason for everything else (counts add up: see :mod:`gair.io.rejects`).

- EuroSAT-MS: ``<root>/<Class>/<Class>_<n>.tif``, 13-band uint16 GeoTIFFs in the order
  B01..B08, B09, B10, B11, B12, B8A; GAIR's 10 bands are picked by name.
- Global Streetscapes per-label CSVs: ``<dir>/<label>.csv`` with ``uuid`` and the label.
- A generic points table: ``lat``, ``lon`` and target columns (location-aware tasks).
- A generic street-view table: ``uuid`` and target columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
from rasterio.errors import RasterioError

from gair.io.rejects import InputConfigurationError, ReadResult, rejects_frame
from gair.io.sentinel2 import GAIR_BANDS
from gair.io.streetscapes import SAFE_UUID, numbers_if_all

EUROSAT_BANDS: tuple[str, ...] = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08",
                                  "B09", "B10", "B11", "B12", "B8A")
"""Band order of EuroSAT-MS files (B8A last, unlike the L2A products)."""


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
                    max_per_class: int | None = None) -> ImageClassification:
    """EuroSAT-MS reduced to GAIR's 10 bands (digital numbers x 10000 of TOA reflectance,
    no offset). Files with another band count or size, or that fail to read, are rejected."""
    root = Path(root)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if not classes:
        raise InputConfigurationError(f"{root}: no class folders (EuroSAT_MS/<Class>/*.tif)")
    missing = [b for b in GAIR_BANDS if b not in band_order]
    if missing:
        raise InputConfigurationError(f"band order {list(band_order)} lacks {missing}")
    pick = [list(band_order).index(b) + 1 for b in GAIR_BANDS]
    images, labels, files, rejects = [], [], [], []
    read = 0
    shape = None
    for name in classes:
        paths = sorted((root / name).glob("*.tif"))[:max_per_class]
        for path in paths:
            read += 1
            relative = str(path.relative_to(root))
            try:
                with rasterio.open(path) as src:
                    if src.count != len(band_order):
                        rejects.append({"file": relative, "reason": "wrong band count",
                                        "detail": f"{src.count} bands, {len(band_order)} expected"})
                        continue
                    image = src.read(pick)
            except RasterioError as error:
                rejects.append({"file": relative, "reason": "unreadable", "detail": str(error)})
                continue
            shape = shape or image.shape
            if image.shape != shape:
                rejects.append({"file": relative, "reason": "wrong size",
                                "detail": f"{image.shape[1:]} where {shape[1:]} expected"})
                continue
            images.append(image)
            labels.append(name)
            files.append(relative)
    stacked = np.stack(images) if images else np.zeros((0, len(GAIR_BANDS), 0, 0), np.uint16)
    return ImageClassification(
        stacked, np.array(labels, dtype=object), files,
        rejects_frame({"stage": "benchmark/eurosat", "item": r["file"], "row": None, **r}
                      for r in rejects), read)


def read_label_csvs(directory: Path, labels: Sequence[str]) -> ReadResult:
    """Global Streetscapes per-label CSVs (``<label>.csv``: ``uuid``, ``<label>``) joined
    on ``uuid``. A row is rejected for an unsafe uuid, a duplicate uuid, or an empty
    value; a uuid is accepted when it has every label."""
    directory = Path(directory)
    tables, rejects = [], []
    for label in labels:
        path = directory / f"{label}.csv"
        if not path.is_file():
            raise InputConfigurationError(f"{path}: label file missing")
        kept, bad = _read_targets_table(path, ("uuid",), [label], "uuid", "benchmark/labels")
        rejects += bad
        tables.append(kept[["uuid", label]].set_index("uuid"))
    joined = pd.concat(tables, axis=1, join="outer")
    complete = joined.notna().all(axis=1)
    rejects += [{"file": "", "item": uuid, "reason": "missing labels",
                 "detail": ", ".join(joined.columns[joined.loc[uuid].isna()])}
                for uuid in joined.index[~complete]]
    accepted = joined[complete].reset_index().rename(columns={"index": "uuid"})
    read = len(accepted) + len(rejects)
    return ReadResult(accepted, rejects_frame({"stage": "benchmark/labels", **r}
                                              for r in rejects), read)


def _bad_rows(table: pd.DataFrame, key: str | None, targets: Sequence[str]) -> dict[int, str]:
    """Row index -> reason for rows with an unsafe or duplicate key or an empty target."""
    bad: dict[int, str] = {}
    if key is not None:
        unsafe = ~table[key].astype(str).str.fullmatch(SAFE_UUID)
        duplicate = table[key].duplicated(keep="first")
        bad |= {i: f"unsafe {key}" for i in table.index[unsafe]}
        bad |= {i: f"duplicate {key}" for i in table.index[duplicate & ~unsafe]}
    for column in targets:
        empty = table[column].astype(str).str.strip().isin(["", "nan", "NaN"])
        bad |= {i: f"empty {column}" for i in table.index[empty] if i not in bad}
    return bad


def _read_targets_table(path: Path, required: Sequence[str], targets: Sequence[str],
                        key: str | None, stage: str) -> tuple[pd.DataFrame, list[dict]]:
    path = Path(path)
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [c for c in (*required, *targets) if c not in table.columns]
    if missing:
        raise InputConfigurationError(f"{path}: required columns missing: {missing}")
    bad = _bad_rows(table, key, targets)
    rejects = [{"stage": stage, "file": path.name, "row": i + 1,
                "item": table.loc[i, key] if key else str(i + 1), "reason": reason}
               for i, reason in bad.items()]
    kept = table.drop(index=list(bad))
    for column in targets:
        kept[column] = numbers_if_all(kept[column])
    return kept, rejects


def read_points_table(path: Path, targets: Sequence[str]) -> ReadResult:
    """A points table: ``lat``, ``lon`` (degrees, WGS 84) and ``targets``. Rows with a
    missing, non-numeric or out-of-range coordinate or an empty target are rejected.
    ``accepted`` is a GeoDataFrame in EPSG:4326."""
    table, rejects = _read_targets_table(path, ("lat", "lon"), targets, None, "benchmark/points")
    lat = pd.to_numeric(table["lat"], errors="coerce")
    lon = pd.to_numeric(table["lon"], errors="coerce")
    reasons = pd.Series("", index=table.index)
    reasons[lat.isna() | lon.isna()] = "missing or non-numeric lat/lon"
    reasons[(reasons == "") & ((lat.abs() > 90) | (lon.abs() > 180))] = "lat/lon out of range"
    for i in reasons.index[reasons != ""]:
        rejects.append({"stage": "benchmark/points", "file": Path(path).name, "row": i + 1,
                        "item": str(i + 1), "reason": reasons[i],
                        "detail": f"lat={table.loc[i, 'lat']}, lon={table.loc[i, 'lon']}"})
    ok = reasons == ""
    accepted = table[ok].assign(lat=lat[ok], lon=lon[ok]).reset_index(drop=True)
    points = gpd.GeoDataFrame(accepted, geometry=gpd.points_from_xy(accepted["lon"],
                                                                     accepted["lat"]),
                              crs="EPSG:4326")
    rejects.sort(key=lambda r: r["row"])
    return ReadResult(points, rejects_frame(rejects), len(points) + len(rejects))


def read_street_view_table(path: Path, targets: Sequence[str]) -> ReadResult:
    """A street-view table: ``uuid`` and ``targets``; rows with an unsafe or duplicate
    uuid or an empty target are rejected."""
    table, rejects = _read_targets_table(path, ("uuid",), targets, "uuid",
                                         "benchmark/street_views")
    return ReadResult(table.reset_index(drop=True), rejects_frame(rejects),
                      len(table) + len(rejects))


def random_splits(n: int, fractions: dict[str, float], seed: int) -> np.ndarray:
    """Split names for ``n`` items drawn at random in the given fractions (for benchmarks
    that come without a split or a place, such as EuroSAT)."""
    bounds = np.cumsum([v / sum(fractions.values()) for v in fractions.values()])
    position = np.random.default_rng(seed).permutation(n) / max(n, 1)
    return np.array(list(fractions), dtype=object)[np.searchsorted(bounds, position,
                                                                   side="right")]


def block_splits(lat: np.ndarray, lon: np.ndarray, block_deg: float,
                 fractions: dict[str, float], seed: int) -> np.ndarray:
    """Split names by spatial blocks of ``block_deg`` degrees (a block is in one split),
    for point tables without a ``split`` column."""
    from gair.geo.pairing import assign_splits, spatial_blocks

    blocks = spatial_blocks(np.zeros(len(lat), np.int64), np.asarray(lon), np.asarray(lat),
                            block_deg)
    return np.array(list(fractions), dtype=object)[assign_splits(blocks, fractions, seed)]
