"""Training shards: RS patches and street views with their query coordinates, as tar files.

The layout is WebDataset's: tar members grouped by key. Each RS patch is stored once per
shard, before the street views that see it: ``<patch key>.rs.npy`` (uint16, (10, P, P):
reflectance x 10000 of GAIR's bands, BOA offset removed) and ``<patch key>.valid.npy``
(bool, (P, P): pixels with data). Each street view (key: its uuid) follows as
``<uuid>.sv.jpg`` (resized near training size) and ``<uuid>.json`` (ids, location, query
coordinate, split, and ``patch_key``, its patch). Tar files stream sequentially, and ranks
and DataLoader workers read disjoint sets of shards (:func:`shards_for_worker`).
:func:`read_encoded_shard` yields the stored bytes (cheap to hold in a shuffle buffer: the
views of a patch share its bytes); :func:`decode_sample` decodes one, and
:func:`read_shard` does both.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import logging
import math
import tarfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from PIL import Image
from rasterio.errors import RasterioError
from tqdm.auto import tqdm

from gair.io.images import MAX_IMAGE_PIXELS, ImageRejected, load_rgb
from gair.io.l2a import GAIR_BANDS
from gair.io.rejects import rejects_frame
from gair.io.sentinel2 import read_patch, tile_records

if TYPE_CHECKING:
    import torch

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


def patch_key(patch_id: str) -> str:
    """The tar key of a patch: its id hashed (ids hold dots, which end a WebDataset key)."""
    return "patch-" + hashlib.blake2b(patch_id.encode(), digest_size=8).hexdigest()


def write_shard(path: Path, patches: Sequence[dict[str, Any]]) -> None:
    """Write patches to a tar: ``key``, ``rs``, ``valid`` and ``views``, the street views
    that see the patch (``key``, ``sv_jpeg`` bytes, ``meta``; ``patch_key`` is added to
    ``meta``). Each patch is written once, followed by its views."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for patch in patches:
            _add_member(tar, f"{patch['key']}.rs.npy", _npy_bytes(patch["rs"]))
            _add_member(tar, f"{patch['key']}.valid.npy", _npy_bytes(patch["valid"]))
            for view in patch["views"]:
                meta = view["meta"] | {"patch_key": patch["key"]}
                _add_member(tar, f"{view['key']}.sv.jpg", view["sv_jpeg"])
                _add_member(tar, f"{view['key']}.json", json.dumps(meta, sort_keys=True).encode())


@dataclass(frozen=True)
class EncodedPatch:
    """An RS patch as stored: the bytes of its ``.rs.npy`` and ``.valid.npy`` members."""

    key: str
    rs_npy: bytes
    valid_npy: bytes


@dataclass(frozen=True)
class EncodedSample:
    """A street view as stored (JPEG bytes, metadata) and the patch it sees, shared with
    the other views of that patch."""

    key: str
    sv_jpeg: bytes
    meta: dict[str, Any]
    patch: EncodedPatch


_BLOCK = 512


def _pax_records(payload: bytes) -> dict[str, str]:
    """The ``<length> <key>=<value>\\n`` records of a pax extended header; ValueError
    (UnicodeDecodeError included) where a record does not hold together."""
    records, position = {}, 0
    while position < len(payload) and payload[position] != 0:
        digits, space, _ = payload[position:position + 21].partition(b" ")
        length = int(digits) if space and digits.isdigit() else 0
        record = payload[position:position + length]
        key, equals, value = record[len(digits) + 1:-1].partition(b"=")
        if length <= len(digits) + 1 or len(record) < length or not record.endswith(b"\n") \
                or not equals:
            raise ValueError(f"bad pax record at offset {position}")
        records[key.decode()] = value.decode()
        position += length
    return records


def _tar_files(path: Path) -> Iterator[tuple[str, bytes]]:
    """(name, payload) of each file of a tar, in order: a reader of the ustar and pax
    layouts that the shards use, about two and a half times faster per member group than
    :mod:`tarfile` (about 30 us against 65 on the sample world's shards; tarfile came to a tenth
    of a small model's training step on the CPU). Headers are checksummed, and the archive
    must end in its end-of-archive blocks with nothing but zeros after them: a truncated
    or corrupt shard, or a member that is not a plain file, is an error naming the shard
    and the byte where it happened, never fewer samples."""
    with open(path, "rb") as stream:
        extended: dict[str, str] = {}
        while True:
            offset = stream.tell()
            header = stream.read(_BLOCK)
            if len(header) == _BLOCK and not header.strip(b"\0"):
                _expect_zeros(stream, path, offset)
                return
            if not header:  # a file cut at a member's end would lose views silently
                raise ValueError(f"{path}: truncated: no end-of-archive block after byte "
                                 f"{offset}")
            if len(header) < _BLOCK:
                raise ValueError(f"{path}: truncated tar header at byte {offset}")
            try:
                stored = int(header[148:156].strip(b"\0 ") or b"-1", 8)
                size = int.from_bytes(header[125:136], "big") if header[124] & 0x80 else \
                    int(header[124:136].strip(b"\0 ") or b"0", 8)
            except ValueError:
                raise ValueError(f"{path}: corrupt tar header at byte {offset}") from None
            if stored != sum(header[:148]) + 8 * 32 + sum(header[156:]):
                raise ValueError(f"{path}: corrupt tar header at byte {offset} (checksum)")
            try:
                size = int(extended.get("size", size))
            except ValueError:
                raise ValueError(f"{path}: corrupt pax size before byte {offset}") from None
            padded = size + -size % _BLOCK
            data = stream.read(padded)
            if len(data) < padded:
                raise ValueError(f"{path}: truncated: the member at byte {offset} holds "
                                 f"{min(len(data), size)} of its {size} bytes"
                                 + ("" if len(data) < size else " and part of its padding"))
            payload = data[:size]
            kind = header[156:157]
            if kind == b"x":  # a pax header for the next member
                try:
                    extended = _pax_records(payload)
                except ValueError as error:  # UnicodeDecodeError included
                    raise ValueError(f"{path}: corrupt pax header at byte {offset} ({error})") \
                        from None
                continue
            if kind == b"L":  # a GNU long name for the next member
                extended = {"path": _header_text(payload, path, offset)}
                continue
            if kind == b"g":  # pax global header: nothing the shards need
                continue
            if kind not in (b"0", b"\0"):
                raise ValueError(f"{path}: the member at byte {offset} is not a plain file "
                                 f"(tar type {kind!r})")
            name = _header_text(header[:100], path, offset)
            prefix = _header_text(header[345:500], path, offset) \
                if header[257:262] == b"ustar" else ""
            yield extended.get("path", f"{prefix}/{name}" if prefix else name), payload
            extended = {}


def _header_text(raw: bytes, path: Path, offset: int) -> str:
    """A NUL-padded name field, UTF-8 as tarfile writes it."""
    try:
        return raw.rstrip(b"\0").decode()
    except UnicodeDecodeError:
        raise ValueError(f"{path}: corrupt name in the tar header at byte {offset}") from None


def _expect_zeros(stream: io.BufferedReader, path: Path, offset: int) -> None:
    """After the first end-of-archive block only zeros (the record's padding): a header
    zeroed by damage must not end the shard early and silently."""
    while chunk := stream.read(1 << 16):
        if chunk.strip(b"\0"):
            raise ValueError(f"{path}: data after the end-of-archive block at byte {offset}: "
                             "a zeroed tar header, the shard is corrupt")


def _member_groups(path: Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {kind: payload}) of consecutive tar members sharing a key."""
    key, group = None, {}
    for member, payload in _tar_files(path):
        name, _, kind = member.partition(".")
        if group and name != key:
            yield key, group
            group = {}
        key = name
        group[kind] = payload
    if group:
        yield key, group


def read_encoded_shard(path: Path) -> Iterator[EncodedSample]:
    """Stream the street views of one shard, undecoded, each with its patch's bytes."""
    patch = None
    for key, group in _member_groups(path):
        if "rs.npy" in group:
            patch = EncodedPatch(key, group["rs.npy"], group["valid.npy"])
        if "json" not in group:
            continue
        meta = json.loads(group["json"])
        if patch is None or meta.get("patch_key") != patch.key:
            raise ValueError(f"{path}: street view {key} does not follow its patch "
                             f"({meta.get('patch_key')}); shards written before patches were "
                             "stored once must be written again (rerun the pair pipeline)")
        yield EncodedSample(key, group["sv.jpg"], meta, patch)


def decode_sv(jpeg: bytes, sv_size: int | None = None) -> torch.Tensor:
    """A stored street view as RGB uint8 [3, H, W]. With ``sv_size``, decoded at the
    smallest JPEG DCT scale (1/2, 1/4, 1/8) that still covers ``sv_size`` on the short side
    (PIL's draft: much cheaper when training far below storage size); at full scale by
    torchvision's decoder, which gives PIL's pixels in two thirds of the time."""
    import torch  # here: the pair pipeline imports this module, and Kedro should start fast
    from torchvision.io import ImageReadMode, decode_jpeg

    image = Image.open(io.BytesIO(jpeg), formats=["JPEG"])  # reads the header only
    if sv_size and min(image.size) >= 2 * sv_size:
        image.draft("RGB", (sv_size, sv_size))
        if image.mode != "RGB":
            image = image.convert("RGB")
        return torch.from_numpy(np.array(image)).permute(2, 0, 1)
    return decode_jpeg(torch.frombuffer(bytearray(jpeg), dtype=torch.uint8),
                       mode=ImageReadMode.RGB)


@functools.lru_cache(maxsize=256)
def _npy_header(header: bytes) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, Fortran order, dtype) of an ``.npy`` header."""
    stream = io.BytesIO(header)
    major, _ = np.lib.format.read_magic(stream)
    read = np.lib.format.read_array_header_1_0 if major == 1 else \
        np.lib.format.read_array_header_2_0
    return read(stream)


def _load_npy(payload: bytes) -> np.ndarray:
    """``np.load`` of stored bytes, with each distinct header parsed once (every patch of a
    shard has the same: parsing it costs more than copying the array out)."""
    size = 2 if payload[6] == 1 else 4  # the header length: uint16 in version 1, then uint32
    start = 8 + size + int.from_bytes(payload[8 : 8 + size], "little")
    shape, fortran, dtype = _npy_header(payload[:start])
    data = np.frombuffer(payload, dtype, count=math.prod(shape), offset=start)
    return data.reshape(shape, order="F" if fortran else "C").copy()


def decode_patch(patch: EncodedPatch) -> tuple[np.ndarray, np.ndarray]:
    """(reflectance x 10000 uint16 [10, P, P], valid bool [P, P]) of a stored patch."""
    return _load_npy(patch.rs_npy), _load_npy(patch.valid_npy)


def decode_sample(sample: EncodedSample, sv_size: int | None = None) -> dict[str, Any]:
    """A stored sample decoded: ``key``, ``sv`` (uint8 [3, H, W], see :func:`decode_sv`),
    ``rs``, ``valid`` (see :func:`decode_patch`) and ``meta``."""
    rs, valid = decode_patch(sample.patch)
    return {"key": sample.key, "sv": decode_sv(sample.sv_jpeg, sv_size), "rs": rs,
            "valid": valid, "meta": sample.meta}


def read_shard(path: Path, sv_size: int | None = None) -> Iterator[dict[str, Any]]:
    """Stream the samples of one shard, decoded (:func:`decode_sample`)."""
    for sample in read_encoded_shard(path):
        yield decode_sample(sample, sv_size)


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
    accepted, rejected, patches = [], [], []
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
        views = []
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
            views.append({"key": record["uuid"], "sv_jpeg": sv_jpeg, "meta": meta})
            accepted.append(record | {"patch_valid_fraction": fraction, "shard": task["shard"]})
        if views:
            patches.append({"key": patch_key(patch_id), "rs": reflectance, "valid": valid,
                            "views": views})
    if patches:
        write_shard(task["out_dir"] / task["shard"], patches)
    return accepted, rejected


def extract_shards(candidates: pd.DataFrame, tiles: pd.DataFrame, sentinel2_dir: Path,
                   streetscapes_dir: Path, out_dir: Path, settings: ExtractionSettings,
                   samples_per_shard: int, workers: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write the shards of all candidate pairs; return the accepted pairs and the rejects.

    Candidates are grouped by split, then tile and patch (so each patch is read and stored
    once per shard), and cut into shards of ``samples_per_shard``; shards are extracted by
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
