"""STAC catalogues of Sentinel-2 L2A scenes: providers, search, and what a scene item says.

Facts used here, as Earth Search v1 (``sentinel-2-l2a``) publishes them: items carry
``datetime``, ``eo:cloud_cover``, ``s2:processing_baseline``, ``proj:epsg`` (newer STAC
projection versions: ``proj:code`` = ``"EPSG:32632"``), ``mgrs:*`` and
``earthsearch:boa_offset_applied``; assets are keyed by common names (``blue``, ``nir08``,
``scl`` ...), one COG per band at its native resolution, with ``proj:transform``,
``proj:shape`` and ``raster:bands`` (``scale`` 0.0001, ``offset`` -0.1 from baseline
04.00). Planetary Computer keys the same assets ``B01`` ... ``B12``, ``B8A``, ``SCL`` and
serves them through short-lived signed URLs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import shapely
from shapely.geometry import shape

from gair.io.l2a import L2A_BANDS, QUANTIFICATION_VALUE, boa_add_offset
from gair.io.rejects import InputConfigurationError

logger = logging.getLogger(__name__)

SCL = "SCL"
"""The scene classification layer (20 m), read first to mask clouds per window."""

EARTH_SEARCH_ASSETS: dict[str, str] = {
    "B01": "coastal", "B02": "blue", "B03": "green", "B04": "red", "B05": "rededge1",
    "B06": "rededge2", "B07": "rededge3", "B08": "nir", "B8A": "nir08", "B09": "nir09",
    "B11": "swir16", "B12": "swir22", SCL: "scl",
}
PLANETARY_COMPUTER_ASSETS: dict[str, str] = {band: band for band in (*L2A_BANDS, SCL)}


@dataclass(frozen=True)
class Provider:
    """A STAC API serving Sentinel-2 L2A, and how its items name the band assets."""

    name: str
    url: str
    collection: str
    asset_keys: Mapping[str, str]
    signs_urls: bool = False  # Planetary Computer: asset URLs need a SAS token


PROVIDERS: dict[str, Provider] = {
    "earth_search": Provider("earth_search", "https://earth-search.aws.element84.com/v1",
                             "sentinel-2-l2a", EARTH_SEARCH_ASSETS),
    "planetary_computer": Provider(
        "planetary_computer", "https://planetarycomputer.microsoft.com/api/stac/v1",
        "sentinel-2-l2a", PLANETARY_COMPUTER_ASSETS, signs_urls=True),
}


def provider_for(name: str, url: str | None = None, collection: str | None = None,
                 asset_keys: Mapping[str, str] | None = None) -> Provider:
    """A known provider, with its URL, collection or asset keys overridden where given."""
    if name not in PROVIDERS:
        raise InputConfigurationError(
            f"unknown STAC provider {name!r}; expected one of {', '.join(PROVIDERS)}")
    base = PROVIDERS[name]
    keys = dict(base.asset_keys) | dict(asset_keys or {})
    unknown = sorted(set(keys) - set(base.asset_keys))
    if unknown:
        raise InputConfigurationError(
            f"asset_keys name unknown band(s) {unknown}; bands are {', '.join(base.asset_keys)}")
    return Provider(base.name, url or base.url, collection or base.collection, keys,
                    base.signs_urls)


class SceneError(Exception):
    """An item that cannot be used as a scene (missing asset, no CRS ...)."""


@dataclass(frozen=True)
class Scene:
    """One STAC item, reduced to what acquisition needs.

    ``dn_offset`` is the offset the digital numbers of the COGs carry (-1000 or 0), and
    ``tile_baseline`` the processing baseline written into tiles so that ingest, which
    derives the offset from the baseline, decodes the pixels with that offset.
    """

    item_id: str
    collection: str
    datetime: pd.Timestamp
    cloud_cover: float
    epsg: int
    footprint: shapely.Geometry
    hrefs: Mapping[str, str]
    processing_baseline: str
    dn_offset: int
    tile_baseline: str
    offset_source: str
    offset_note: str = ""
    properties: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def sensing_time(self) -> str:
        """``datetime`` as ISO 8601 UTC with microseconds, e.g. 2023-06-01T10:20:31.024000Z."""
        return self.datetime.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _epsg_of(properties: Mapping[str, Any], asset: Mapping[str, Any]) -> int | None:
    for holder in (asset, properties):
        if holder.get("proj:epsg") is not None:
            return int(holder["proj:epsg"])
        code = holder.get("proj:code")
        if isinstance(code, str) and code.upper().startswith("EPSG:"):
            return int(code.split(":", 1)[1])
    return None


def _raster_offset(asset: Mapping[str, Any]) -> int | None:
    """The asset's ``raster:bands`` offset in digital numbers (offset / scale), if stated."""
    bands = asset.get("raster:bands") or []
    if not bands or "offset" not in bands[0]:
        return None
    scale = float(bands[0].get("scale", 1.0 / QUANTIFICATION_VALUE))
    return round(float(bands[0]["offset"]) / scale)


def decide_offset(properties: Mapping[str, Any], asset: Mapping[str, Any]
                  ) -> tuple[int, str, str, str]:
    """The offset the pixels carry, the baseline to write, where the offset came from, and a
    note when the item's metadata disagree.

    Order of trust: Earth Search's ``earthsearch:boa_offset_applied: true`` means the COG
    pixels were already shifted back (no offset left in them; its maintainers call the flag
    the truth where ``raster:bands`` still says -0.1); otherwise the asset's ``raster:bands``
    offset decides; otherwise the processing baseline (04.00 on: -1000). Tiles carry the
    scene's baseline when it agrees with the offset decided, else a stand-in baseline of the
    same convention ("04.00" with the offset, "00.00" without), and the note says why.
    """
    raw_baseline = properties.get("s2:processing_baseline")
    baseline = str(raw_baseline) if raw_baseline is not None else ""
    try:
        baseline_offset = boa_add_offset(baseline) if baseline else None
    except ValueError:
        baseline_offset = None
    stated = _raster_offset(asset)
    if properties.get("earthsearch:boa_offset_applied") is True and (baseline_offset or stated):
        offset, source = 0, "earthsearch:boa_offset_applied"
    elif stated is not None:
        offset, source = stated, "raster:bands offset"
    elif baseline_offset is not None:
        offset, source = baseline_offset, "s2:processing_baseline"
    else:
        raise SceneError("no processing baseline and no raster:bands offset: the BOA offset "
                         "of the pixels is unknown")
    if offset not in (0, -1000):
        raise SceneError(f"unexpected BOA offset {offset} DN (expected 0 or -1000)")
    if baseline_offset == offset:
        return offset, baseline, source, ""
    stand_in = "04.00" if offset else "00.00"
    note = (f"s2:processing_baseline {baseline or 'missing'} implies offset {baseline_offset}, "
            f"but {source} says {offset}: tile written with baseline {stand_in} so the "
            f"offset is decoded as {offset}")
    return offset, stand_in, source, note


def scene_from_item(item: Mapping[str, Any], provider: Provider) -> Scene:
    """A :class:`Scene` from a STAC item dict, or :class:`SceneError` saying what is missing."""
    properties = item.get("properties") or {}
    assets = item.get("assets") or {}
    missing = [f"{band} ({key})" for band, key in provider.asset_keys.items() if key not in assets]
    if missing:
        raise SceneError(f"assets missing: {', '.join(missing)}")
    if item.get("geometry") is None or properties.get("datetime") is None:
        raise SceneError("no geometry or no datetime")
    reference = assets[provider.asset_keys["B02"]]
    epsg = _epsg_of(properties, reference)
    if epsg is None:
        raise SceneError("no proj:epsg / proj:code")
    offset, tile_baseline, source, note = decide_offset(properties, reference)
    return Scene(
        item_id=str(item["id"]), collection=str(item.get("collection") or provider.collection),
        datetime=pd.Timestamp(properties["datetime"]).tz_convert("UTC"),
        cloud_cover=float(properties.get("eo:cloud_cover", 100.0)), epsg=epsg,
        footprint=shape(item["geometry"]),
        hrefs={band: assets[key]["href"] for band, key in provider.asset_keys.items()},
        processing_baseline=str(properties.get("s2:processing_baseline") or ""),
        dn_offset=offset, tile_baseline=tile_baseline, offset_source=source,
        offset_note=note, properties=dict(properties),
    )


def _planetary_computer_signer() -> Callable[[Any], None]:
    try:
        import planetary_computer
    except ImportError as error:
        raise InputConfigurationError(
            "provider planetary_computer signs asset URLs with the `planetary-computer` "
            "package: pip install 'gair[planetary-computer]'") from error
    return planetary_computer.sign_inplace


def open_catalogue(provider: Provider, max_retries: int, retry_backoff_s: float,
                   timeout_s: float):
    """A ``pystac_client.Client`` whose requests are retried on connection errors and on
    429/5xx answers (GET and POST), with exponential back-off."""
    from pystac_client import Client
    from pystac_client.stac_api_io import StacApiIO
    from urllib3 import Retry

    retry = Retry(total=max_retries, connect=max_retries, read=max_retries,
                  status=max_retries, backoff_factor=retry_backoff_s,
                  status_forcelist=(429, 500, 502, 503, 504),
                  allowed_methods=frozenset({"GET", "POST", "HEAD"}),
                  raise_on_status=False)
    stac_io = StacApiIO(max_retries=retry, timeout=timeout_s)
    modifier = _planetary_computer_signer() if provider.signs_urls else None
    return Client.open(provider.url, stac_io=stac_io, modifier=modifier)


def search_scenes(client, provider: Provider, bbox: tuple[float, float, float, float],
                  start: pd.Timestamp, end: pd.Timestamp, max_cloud_cover: float,
                  page_size: int, max_items: int) -> tuple[list[Scene], list[str]]:
    """Scenes of ``provider.collection`` intersecting ``bbox`` (lon/lat) between ``start``
    and ``end`` with cloud cover <= ``max_cloud_cover``, and the ids of unusable items with
    why. The cloud limit is sent as a ``query`` and checked again here (servers that do not
    implement the query extension ignore it)."""
    search = client.search(
        collections=[provider.collection], bbox=list(bbox),
        datetime=[start.to_pydatetime(), end.to_pydatetime()],
        query={"eo:cloud_cover": {"lte": max_cloud_cover}},
        limit=page_size, max_items=max_items,
    )
    scenes, unusable = [], []
    for item in search.items_as_dicts():
        try:
            scene = scene_from_item(item, provider)
        except SceneError as error:
            unusable.append(f"{item.get('id')}: {error}")
            continue
        if scene.cloud_cover <= max_cloud_cover:
            scenes.append(scene)
    return scenes, unusable
