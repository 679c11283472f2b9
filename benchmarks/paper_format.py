"""Synthetic training shards at the paper's format, written in the project's own layout.

Street views are photo-like JPEGs (quality 90) of short side 256, 4:3, which training
resizes to 224. RS patches are 96 x 96 px, 10 bands, uint16 reflectance x 10000, and several
street views see each patch. Everything is written with :func:`gair.io.shards.write_shard`
and listed in ``samples.parquet`` (splits train and val), so ``PairsDataModule`` reads it
as it reads the pair pipeline's shards. Only the format is real: the contents are noise
with some structure, so decoding and resizing cost what real data costs.

Usage from another script of this folder (``python benchmarks/<script>.py`` puts the
folder on the path)::

    from paper_format import write_paper_shards
    shards_dir = write_paper_shards(tmp / "shards", n_pairs=20_000)
"""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from gair.io.l2a import GAIR_BANDS
from gair.io.shards import SAMPLES_TABLE, SHARD_PATTERN, patch_key, write_shard

SV_SIZE = (341, 256)
"""Stored street view, width x height: short side 256 (the pair pipeline's
``sv_short_side_px``), a 4:3 photo."""
RS_PATCH_PX = 96
JPEG_QUALITY = 90
IMAGE_POOL = 64
"""Distinct JPEGs and RS patches generated; views and patches reuse them (decoding costs
the same whatever the bytes repeat), so writing many pairs stays quick."""


def _photo(rng: np.random.Generator) -> bytes:
    """A photo-like street view: smooth shading, sensor noise, sharp-edged shapes."""
    width, height = SV_SIZE
    y, x = np.mgrid[0:height, 0:width] / width
    image = 100 + 60 * (np.sin(rng.uniform(2, 9) * x[..., None] + rng.uniform(0, 6, 3))
                        * np.cos(rng.uniform(2, 7) * y[..., None] + rng.uniform(0, 6, 3)))
    image += rng.normal(0, 10, (height, width, 3))
    for _ in range(30):
        top, left = rng.integers(0, height - 8), rng.integers(0, width - 8)
        image[top : top + rng.integers(4, 80), left : left + rng.integers(4, 60)] = \
            rng.uniform(0, 255, 3) + rng.normal(0, 10)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(
        buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def _patch(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Reflectance x 10000 [10, P, P] uint16 with plausible band levels, all pixels valid."""
    levels = rng.uniform(500, 3500, (len(GAIR_BANDS), 1, 1))
    texture = rng.normal(0, 300, (1, RS_PATCH_PX, RS_PATCH_PX))
    reflectance = np.clip(levels + texture, 1, 10_000).astype(np.uint16)
    return reflectance, np.ones((RS_PATCH_PX, RS_PATCH_PX), bool)


def write_paper_shards(out_dir: Path, n_pairs: int, views_per_patch: int = 4, seed: int = 0,
                       val_fraction: float = 0.1, samples_per_shard: int = 256) -> Path:
    """Write ``n_pairs`` synthetic pairs at the paper's format to ``out_dir`` and return it.

    ``out_dir/<split>/shard-NNNNNN.tar`` (splits ``train`` and ``val``) and
    ``out_dir/samples.parquet`` (``uuid``, ``lat``, ``lon``, ``tile_id``, ``patch_id``,
    ``qx``, ``qy``, ``split``, ``patch_valid_fraction``, ``shard``), as the pair pipeline
    writes them: each patch stored once per shard with its ``views_per_patch`` street views
    (the last patch may have fewer), views cut into shards of ``samples_per_shard`` in patch
    order. The last ``val_fraction`` of the patches are ``val``. Deterministic in ``seed``.
    """
    if n_pairs < 1 or views_per_patch < 1 or not 0 <= val_fraction < 1:
        raise ValueError(f"need n_pairs >= 1, views_per_patch >= 1, 0 <= val_fraction < 1; "
                         f"got {n_pairs}, {views_per_patch}, {val_fraction}")
    out_dir = Path(out_dir)
    rng = np.random.default_rng(seed)
    photos = [_photo(rng) for _ in range(IMAGE_POOL)]
    patches = [_patch(rng) for _ in range(IMAGE_POOL)]
    n_patches = -(-n_pairs // views_per_patch)
    first_val = n_patches - round(val_fraction * n_patches)
    rows = []
    for index in range(n_pairs):
        patch = index // views_per_patch
        rows.append({
            "uuid": str(uuid.UUID(int=int(rng.integers(0, 2**63)) << 64 | index)),
            "lat": rng.uniform(-60, 70), "lon": rng.uniform(-180, 180),
            "tile_id": f"synthetic-{patch // 100:04d}.tif",
            "patch_id": f"synthetic-{patch // 100:04d}.tif:r{patch % 100 // 10:04d}c{patch % 10:04d}",
            "qx": rng.uniform(-1, 1), "qy": rng.uniform(-1, 1),
            "split": "val" if patch >= first_val else "train", "patch_valid_fraction": 1.0,
            "pool": patch % IMAGE_POOL, "photo": int(rng.integers(0, IMAGE_POOL)),
        })
    table = pd.DataFrame(rows)
    for split, part in table.groupby("split", sort=True):
        for number, start in enumerate(range(0, len(part), samples_per_shard)):
            name = SHARD_PATTERN.format(split=split, index=number)
            chunk = part.iloc[start : start + samples_per_shard]
            write_shard(out_dir / name, [
                {"key": patch_key(patch_id), "rs": patches[group["pool"].iloc[0]][0],
                 "valid": patches[group["pool"].iloc[0]][1],
                 "views": [{"key": row["uuid"], "sv_jpeg": photos[row["photo"]],
                            "meta": {k: row[k] for k in ("uuid", "patch_id", "tile_id", "lat",
                                                         "lon", "qx", "qy", "split")}
                            | {"bands": list(GAIR_BANDS), "patch_valid_fraction": 1.0}}
                           for row in group.to_dict("records")]}
                for patch_id, group in chunk.groupby("patch_id", sort=False)])
            table.loc[chunk.index, "shard"] = name
    table.drop(columns=["pool", "photo"]).to_parquet(out_dir / SAMPLES_TABLE, index=False)
    return out_dir
