"""Typed parameters of the pipelines (one model per ``parameters_<pipeline>.yml`` key).

Kedro validates a node's ``params:`` input against its annotation before anything runs,
so a misspelt key fails at start-up with the key's name. (The sample world's parameters
live with its generator: :class:`gair.sample_world.SampleWorldConfig`.)
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gair.io.sentinel2 import L2A_BANDS


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StreetscapesParams(_Strict):
    """How to read a Global Streetscapes release under ``streetscapes_dir``."""

    metadata_table: str = "metadata_common_attributes.csv"
    label_tables: tuple[str, ...] = ("perception.csv", "contextual.csv")
    images_dir: str = "images"
    image_check: Literal["markers", "decode", "none"] = "markers"
    require_images: bool = True
    workers: int = Field(default=8, ge=1)


class Sentinel2Params(_Strict):
    """How to read the Sentinel-2 L2A tiles under ``sentinel2_dir``."""

    band_order: tuple[str, ...] = L2A_BANDS
    processing_baseline: str = Field(default="auto", pattern=r"^(auto|\d\d\.\d\d)$")
    default_processing_baseline: str = Field(default="05.09", pattern=r"^\d\d\.\d\d$")
    pixel_size_m: float = Field(default=10.0, gt=0)
    verify: Literal["full", "mask", "header"] = "full"
    workers: int = Field(default=1, ge=1)


class IngestParams(_Strict):
    streetscapes: StreetscapesParams = StreetscapesParams()
    sentinel2: Sentinel2Params = Sentinel2Params()


class SplitParams(_Strict):
    fractions: dict[str, float] = {"train": 0.8, "val": 0.1, "test": 0.1}
    block_km: float = Field(default=2.0, gt=0, description="spatial block edge")
    seed: int = 0

    @field_validator("fractions")
    @classmethod
    def _positive(cls, value: dict[str, float]) -> dict[str, float]:
        if not value or any(v < 0 for v in value.values()) or sum(value.values()) <= 0:
            raise ValueError(f"split fractions must be non-negative and not all 0: {value}")
        return value


class ShardParams(_Strict):
    samples_per_shard: int = Field(default=256, ge=1)
    sv_short_side_px: int = Field(default=256, ge=16, description="street views are resized down to this")
    jpeg_quality: int = Field(default=90, ge=30, le=100)
    workers: int = Field(default=2, ge=1)


class PairParams(_Strict):
    patch_size_px: int = Field(default=96, ge=8)
    min_valid_fraction: float = Field(default=0.5, ge=0.0, le=1.0)
    split: SplitParams = SplitParams()
    shards: ShardParams = ShardParams()
