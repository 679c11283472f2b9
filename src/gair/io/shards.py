"""Training shards: RS patches and street views with their query coordinates, as tar files.

The layout is WebDataset's: each sample is a group of tar members sharing a key (the
street view's uuid): ``<key>.sv.jpg`` (the street view, resized near training size),
``<key>.rs.npy`` (uint16, (10, P, P): reflectance x 10000 of GAIR's bands, BOA offset
removed), ``<key>.valid.npy`` (bool, (P, P): pixels with data) and ``<key>.json`` (ids,
location, query coordinate, split). Tar files stream sequentially, and ranks and
DataLoader workers read disjoint sets of shards (:func:`shards_for_worker`).
"""

from __future__ import annotations

import io
import json
import logging
import tarfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image
from rasterio.errors import RasterioError
from tqdm.auto import tqdm

from gair.io.images import MAX_IMAGE_PIXELS, ImageRejected, load_rgb
from gair.io.rejects import rejects_frame
from gair.io.sentinel2 import GAIR_BANDS, read_patch, tile_records

logger = logging.getLogger(__name__)

SHARD_PATTERN = "{split}/shard-{index:06d}.tar"
SAMPLES_TABLE = "samples.parquet"
REJECTS_TABLE = "rejects.csv"


def _add_member(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    info.mtime = 0  # same content, same bytes
    tar.addfile(info, io.BytesIO(payload))


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def write_shard(path: Path, samples: Sequence[dict[str, Any]]) -> None:
    """Write samples (``key``, ``sv_jpeg`` bytes, ``rs``, ``valid``, ``meta``) to a tar."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for sample in samples:
            key = sample["key"]
            _add_member(tar, f"{key}.sv.jpg", sample["sv_jpeg"])
            _add_member(tar, f"{key}.rs.npy", _npy_bytes(sample["rs"]))
            _add_member(tar, f"{key}.valid.npy", _npy_bytes(sample["valid"]))
            _add_member(tar, f"{key}.json", json.dumps(sample["meta"], sort_keys=True).encode())


def read_shard(path: Path, sv_size: int | None = None) -> Iterator[dict[str, Any]]:
    """Stream the samples of one shard: ``sv`` (PIL image), ``rs``, ``valid``, ``meta``.

    With ``sv_size``, JPEGs are decoded at the smallest DCT scale (1/2, 1/4, 1/8) that still
    covers ``sv_size`` on the short side: much cheaper when training below storage size.
    """
    current: dict[str, Any] = {}
    with tarfile.open(path, "r|") as tar:
        for member in tar:
            key, _, kind = member.name.partition(".")
            payload = tar.extractfile(member).read()
            if current and current["key"] != key:
                yield current
                current = {}
            current["key"] = key
            if kind == "sv.jpg":
                image = Image.open(io.BytesIO(payload))
                if sv_size:
                    image.draft("RGB", (sv_size, sv_size))
                current["sv"] = image.convert("RGB")
            elif kind in ("rs.npy", "valid.npy"):
                current[kind.split(".")[0]] = np.load(io.BytesIO(payload), allow_pickle=False)
            elif kind == "json":
                current["meta"] = json.loads(payload)
    if current:
        yield current


def shards_for_worker(paths: Sequence[Path], rank: int = 0, world_size: int = 1,
                      worker: int = 0, num_workers: int = 1) -> list[Path]:
    """The shards one DataLoader worker of one rank reads: disjoint, together all of them."""
    slot, slots = rank * num_workers + worker, world_size * num_workers
    return [path for i, path in enumerate(sorted(paths)) if i % slots == slot]


@dataclass(frozen=True)
class ExtractionSettings:
    patch_size: int
    min_valid_fraction: float
    sv_short_side: int
    jpeg_quality: int
    max_image_pixels: int = MAX_IMAGE_PIXELS  # ingest checked with its own limit


def _street_view_jpeg(path: Path, short_side: int, quality: int, max_pixels: int) -> bytes:
    image = load_rgb(path, max_pixels, short_side)
    scale = short_side / min(image.size)
    if scale < 1.0:
        size = (max(1, round(image.size[0] * scale)), max(1, round(image.size[1] * scale)))
        image = image.resize(size, Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _extract_shard(task: dict[str, Any]) -> tuple[list[dict], list[dict]]:
    """Read one shard's patches and street views, write it, report accepted and rejected."""
    settings: ExtractionSettings = task["settings"]
    size = settings.patch_size
    accepted, rejected, samples = [], [], []
    rows = pd.DataFrame(task["rows"])
    for patch_id, group in rows.groupby("patch_id", sort=False):
        first = group.iloc[0]
        tile = task["tiles"][first["tile_id"]]
        try:
            reflectance, valid = read_patch(task["sentinel2_dir"], tile, int(first["row_off"]),
                                            int(first["col_off"]), size)
        except RasterioError as error:
            for uuid in group["uuid"]:
                rejected.append({"item": uuid, "reason": "patch read failed", "detail": str(error)})
            continue
        fraction = float(valid.mean())
        for record in group.to_dict("records"):
            r = int(np.floor(record["row"])) - int(record["row_off"])
            c = int(np.floor(record["col"])) - int(record["col_off"])
            if fraction < settings.min_valid_fraction:
                rejected.append({"item": record["uuid"], "reason": "patch mostly nodata",
                                 "detail": f"{patch_id}: {fraction:.0%} valid"})
                continue
            if not valid[r, c]:
                rejected.append({"item": record["uuid"], "reason": "street view in nodata",
                                 "detail": f"{patch_id} pixel ({r}, {c})"})
                continue
            try:
                sv_jpeg = _street_view_jpeg(task["streetscapes_dir"] / record["image_path"],
                                            settings.sv_short_side, settings.jpeg_quality,
                                            settings.max_image_pixels)
            except ImageRejected as error:
                rejected.append({"item": record["uuid"], "reason": error.reason,
                                 "detail": error.detail})
                continue
            meta = {k: record[k] for k in ("uuid", "patch_id", "tile_id", "lat", "lon",
                                           "qx", "qy", "split")}
            meta |= {"bands": list(GAIR_BANDS), "patch_valid_fraction": fraction}
            samples.append({"key": record["uuid"], "sv_jpeg": sv_jpeg, "rs": reflectance,
                            "valid": valid, "meta": meta})
            accepted.append(record | {"patch_valid_fraction": fraction, "shard": task["shard"]})
    if samples:
        write_shard(task["out_dir"] / task["shard"], samples)
    return accepted, rejected


def extract_shards(candidates: pd.DataFrame, tiles: pd.DataFrame, sentinel2_dir: Path,
                   streetscapes_dir: Path, out_dir: Path, settings: ExtractionSettings,
                   samples_per_shard: int, workers: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write the shards of all candidate pairs; return the accepted pairs and the rejects.

    Candidates are grouped by split, then tile and patch (so each patch is read once per
    shard), and cut into shards of ``samples_per_shard``; shards are extracted by
    ``workers`` processes with a progress bar.
    """
    ordered = candidates.sort_values(["split", "tile_id", "patch_id", "uuid"], kind="stable")
    tile_by_id = tile_records(tiles)
    tasks = []
    for split, part in ordered.groupby("split", sort=True):
        for index, start in enumerate(range(0, len(part), samples_per_shard)):
            chunk = part.iloc[start : start + samples_per_shard]
            tasks.append({
                "shard": SHARD_PATTERN.format(split=split, index=index),
                "rows": chunk.to_dict("records"),
                "tiles": {t: tile_by_id[t] for t in chunk["tile_id"].unique()},
                "sentinel2_dir": Path(sentinel2_dir), "streetscapes_dir": Path(streetscapes_dir),
                "out_dir": Path(out_dir), "settings": settings,
            })
    accepted: list[dict] = []
    rejected: list[dict] = []
    progress = tqdm(total=len(candidates), desc="pairs", unit="pair", disable=None)
    if workers > 1 and len(tasks) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(_extract_shard, task) for task in tasks]
            for future in as_completed(futures):
                ok, bad = future.result()
                accepted += ok
                rejected += bad
                progress.update(len(ok) + len(bad))
    else:
        for task in tasks:
            ok, bad = _extract_shard(task)
            accepted += ok
            rejected += bad
            progress.update(len(ok) + len(bad))
    progress.close()
    pairs = pd.DataFrame(accepted, columns=[*candidates.columns, "patch_valid_fraction", "shard"])
    pairs = pairs.sort_values("uuid", kind="stable").reset_index(drop=True)
    rejects = rejects_frame({"stage": "pair/extract", "file": "", "row": None, **r}
                            for r in sorted(rejected, key=lambda r: r["item"]))
    return pairs, rejects
