"""Parameters of the sample world (``conf/base/parameters_sample_world.yml``)."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Site(BaseModel):
    """A place the sample world puts Sentinel-2 tiles and street views."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9_]+$")
    lat: float = Field(ge=-80.0, le=84.0, description="latitude of the first tile's centre")
    lon: float = Field(ge=-180.0, le=180.0, description="longitude of the first tile's centre")
    utc_offset: str = Field(description="local UTC offset of the street views, '+HH:MM'")
    nodata_border: bool = Field(
        default=False, description="cut a swath edge of nodata (0) across the tile's corner"
    )
    urbanity: float = Field(
        default=0.5, ge=0.0, le=1.0, description="share of built-up land to aim for"
    )

    @field_validator("utc_offset")
    @classmethod
    def _offset_format(cls, value: str) -> str:
        if not re.fullmatch(r"[+-](0\d|1[0-4]):[0-5]\d", value):
            raise ValueError(f"utc_offset {value!r} is not of the form '+HH:MM'")
        return value


class SampleWorldConfig(BaseModel):
    """Size and seed of the generated sample world. All sizes scale it up or down."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = 0
    sites: tuple[Site, ...] = Field(min_length=1)
    tiles_per_site: int = Field(default=1, ge=1, description="adjacent tiles west to east")
    tile_size_px: int = Field(default=512, ge=64)
    pixel_size_m: float = Field(default=10.0, gt=0)
    street_views_per_tile: int = Field(default=60, ge=1)
    street_views_outside: int = Field(
        default=3, ge=0, description="street views placed deliberately outside every tile"
    )
    image_width: int = Field(default=256, ge=32)
    image_height: int = Field(default=192, ge=24)
    panorama_fraction: float = Field(
        default=0.25, ge=0.0, le=1.0, description="share of 2:1 spherical panoramas"
    )
    kartaview_fraction: float = Field(default=0.2, ge=0.0, le=1.0)
    images_per_folder: int = Field(default=50, ge=1, description="rows per <start>_<end> folder")
    jpeg_quality: int = Field(default=88, ge=30, le=100)
    processing_baseline: str = Field(default="05.09", pattern=r"^\d\d\.\d\d$")
    acquisition_date: str = Field(default="2024-07-09", pattern=r"^\d{4}-\d\d-\d\d$")
