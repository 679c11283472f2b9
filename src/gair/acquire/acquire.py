"""Acquire Sentinel-2 L2A tiles for street views from a STAC catalogue.

The tile grid: square windows of ``tile_size_px`` x 10 m in the UTM zone of the street view
(Sentinel-2's own zones: every place is covered by the MGRS tiles of its zone), aligned to
multiples of the window's edge, so a window's tile has one name whoever asks for it. Each
window gets one scene: the least cloudy one near the views' capture dates whose footprint
holds the window and whose scene classification (SCL) leaves enough of the window clear;
masked pixels are 0 (nodata) in every band. Tiles are 12-band L2A stacks that ingest reads.

Resumable: a window whose tile is already there, written by acquire with the same
settings, is neither searched nor fetched again; each tile appears whole (written beside
its name and renamed). Files that acquire did not write are never replaced or deleted.
"""

from __future__ import annotations

import json
import logging
import re
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import rasterio
import shapely
from affine import Affine
from pyproj import CRS
from rasterio.errors import RasterioError
from tqdm.auto import tqdm

from gair.acquire.fetch import (
    PIXEL_M,
    clear_gdal_http_cache,
    gdal_http_options,
    masked_pixels,
    read_scene_window,
    read_scl_window,
)
from gair.acquire.stac import (
    Provider,
    Scene,
    SceneError,
    open_catalogue,
    provider_for,
    search_scenes,
)
from gair.geo.crs import transform_grouped, transformer
from gair.geo.utm import utm_zone_for
from gair.io.directories import MANIFEST_NAME, _process_alive, replacing_file
from gair.io.l2a import MASKED_SCL_CLASSES
from gair.io.rejects import InputConfigurationError, count_report, rejects_frame
from gair.io.sentinel2 import write_l2a_geotiff

logger = logging.getLogger(__name__)

ACQUIRE_VERSION = "1"
"""Written into every tile (``GAIR_ACQUIRE_VERSION``): marks the files acquire owns."""

STAGE = "acquire"
PROVENANCE_COLUMNS = (
    "tile", "stac_item_id", "stac_collection", "stac_api", "sensing_time", "cloud_cover",
    "processing_baseline", "scene_processing_baseline", "boa_add_offset", "offset_source",
    "offset_note", "masked_fraction", "bytes_fetched", "epsg", "n_views", "view_uuids",
)
UNUSABLE_LEDGER = ".gair-acquire-unusable.json"
"""Windows found to have no usable scene, with the settings and dates they were judged
under: a rerun rejects them again without asking the network (HTTP failures are not
recorded: a rerun tries those again)."""
RECORDED_REASONS = ("no scene", "every scene too cloudy")
_PARTIAL_FILE = re.compile(r"^\..+\.partial-(?P<pid>\d+)-[0-9a-f]{8}$")


@dataclass(frozen=True, order=True)
class TileWindow:
    """A square of ``size_px`` 10 m pixels in UTM zone ``epsg``; (x0, y1) is its north-west
    corner in metres, a multiple of the window's edge."""

    epsg: int
    x0: int
    y1: int
    size_px: int

    @property
    def transform(self) -> Affine:
        return Affine(PIXEL_M, 0.0, self.x0, 0.0, -PIXEL_M, self.y1)

    @property
    def relpath(self) -> str:
        return f"EPSG{self.epsg}/S2L2A_E{self.x0:07d}_N{self.y1:08d}_{self.size_px}px.tif"

    def footprint(self) -> shapely.Polygon:
        """The window's outline in EPSG:4326 (edges densified)."""
        edge = self.size_px * PIXEL_M
        box = shapely.segmentize(shapely.box(self.x0, self.y1 - edge, self.x0 + edge, self.y1),
                                 max_segment_length=edge / 8)
        xs, ys = np.asarray(box.exterior.coords).T
        lon, lat = transformer(f"EPSG:{self.epsg}", "EPSG:4326").transform(xs, ys)
        return shapely.Polygon(np.column_stack([lon, lat]))


@dataclass
class WindowPlan:
    """The views of one window and the dates they ask for."""

    window: TileWindow
    uuids: list[str]
    target: pd.Timestamp  # scenes nearest this date rank first
    start: pd.Timestamp  # scenes outside [start, end] are not candidates
    end: pd.Timestamp
    area: str = ""
    candidates: list[Scene] = field(default_factory=list)


@dataclass(frozen=True)
class AcquireResult:
    """Tiles' provenance, views served (uuid -> tile), rejects and run figures."""

    tiles: pd.DataFrame
    views: pd.DataFrame
    rejects: pd.DataFrame
    read: int
    figures: dict[str, Any]

    def report(self) -> dict[str, Any]:
        return count_report(self.read, len(self.views), self.rejects) | self.figures


def tile_windows(lat: np.ndarray, lon: np.ndarray, size_px: int) -> list[TileWindow]:
    """The window holding each point, in the point's UTM zone."""
    zones = [utm_zone_for(a, o) for a, o in zip(lat, lon, strict=True)]
    epsgs = np.array([(32600 if north else 32700) + zone for zone, north in zones])
    codes = sorted(set(epsgs.tolist()))
    group = np.searchsorted(codes, epsgs)
    x, y = transform_grouped(np.asarray(lon, float), np.asarray(lat, float), group,
                             [f"EPSG:{c}" for c in codes])
    edge = size_px * PIXEL_M
    x0 = (np.floor(x / edge) * edge).astype(np.int64)
    y1 = ((np.floor(y / edge) + 1) * edge).astype(np.int64)
    return [TileWindow(int(e), int(a), int(b), size_px)
            for e, a, b in zip(epsgs, x0, y1, strict=True)]


def area_of(window: TileWindow, by: str, grid_deg: float) -> str:
    """The search area of a window: its MGRS 100 km square (UTM zone + 100 km cell, named
    by numbers rather than MGRS letters) or a ``grid_deg`` lat/lon cell of its centre."""
    if by == "mgrs":
        half = window.size_px * PIXEL_M / 2
        return (f"EPSG{window.epsg}_E{int((window.x0 + half) // 100_000)}"
                f"_N{int((window.y1 - half) // 100_000)}")
    centre = window.footprint().centroid
    return f"lat{int(np.floor(centre.y / grid_deg))}_lon{int(np.floor(centre.x / grid_deg))}"


def plan_windows(views: pd.DataFrame, size_px: int, days_window: int,
                 default_date_range: Sequence[str]) -> list[WindowPlan]:
    """Group the views by window; each window's date range covers its views' capture dates
    +- ``days_window`` (views without a date: ``default_date_range``)."""
    windows = tile_windows(views["lat"].to_numpy(float), views["lon"].to_numpy(float), size_px)
    if "datetime_utc" in views:
        dates = pd.to_datetime(views["datetime_utc"], utc=True, errors="coerce")
    else:
        dates = pd.Series(pd.NaT, index=views.index, dtype="datetime64[ns, UTC]")
    default_start, default_end = (pd.Timestamp(d, tz="UTC") for d in default_date_range)
    members: dict[TileWindow, list[int]] = defaultdict(list)
    for position, window in enumerate(windows):
        members[window].append(position)
    days = pd.Timedelta(days=days_window)
    plans = []
    for window, positions in sorted(members.items()):
        known = dates.iloc[positions].dropna()
        if len(known):
            target = known.sort_values().iloc[(len(known) - 1) // 2]  # a real capture date
            start, end = known.min() - days, known.max() + days
        else:
            target = default_start + (default_end - default_start) / 2
            start, end = default_start, default_end
        plans.append(WindowPlan(window, views["uuid"].iloc[positions].astype(str).tolist(),
                                target, start, end))
    return plans


def _settings_key(provider: Provider, settings: dict[str, Any]) -> str:
    """What decides a tile's content; a tile written under other settings is fetched again."""
    return json.dumps({"api": provider.url, "collection": provider.collection} | settings,
                      sort_keys=True, default=str)


def _tile_state(path: Path, key: str) -> str:
    """``missing``, ``current`` (acquire's, same settings), ``stale`` (acquire's, other
    settings: replaced) or ``foreign`` (not acquire's: left alone)."""
    if not path.exists():
        return "missing"
    try:
        with rasterio.open(path) as src:
            tags = src.tags()
    except RasterioError:
        return "foreign"
    if tags.get("GAIR_ACQUIRE_VERSION") is None:
        return "foreign"
    return "current" if tags.get("ACQUIRE_SETTINGS") == key else "stale"


def _read_ledger(out_dir: Path) -> dict[str, dict[str, str]]:
    path = out_dir / UNUSABLE_LEDGER
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError:
        logger.warning("%s is not readable JSON; its windows will be searched again", path)
        return {}


def _write_ledger(out_dir: Path, ledger: dict[str, dict[str, str]]) -> None:
    with replacing_file(out_dir / UNUSABLE_LEDGER) as staging:
        staging.write_text(json.dumps(ledger, indent=1, sort_keys=True))


def _ledger_stamp(plan: WindowPlan, key: str) -> str:
    return json.dumps([key, str(plan.start), str(plan.end)])


def remove_abandoned_partials(folder: Path) -> list[Path]:
    """Remove staging files (``.<tile>.partial-<pid>-<token>``) of runs that were killed."""
    removed = []
    for path in sorted(Path(folder).rglob(".*.partial-*")):
        match = _PARTIAL_FILE.match(path.name)
        if match and path.is_file() and not _process_alive(int(match["pid"])):
            path.unlink(missing_ok=True)
            removed.append(path)
    if removed:
        logger.warning("Removed %d staging file(s) left by an interrupted acquire run", len(removed))
    return removed


def _candidates(plan: WindowPlan, scenes: list[Scene]) -> list[Scene]:
    """Scenes in the window's zone whose footprint holds it, in its date range, ranked by
    (cloud cover, distance to the target date, id)."""
    outline = plan.window.footprint()
    usable = [s for s in scenes if s.epsg == plan.window.epsg and plan.start <= s.datetime
              <= plan.end and s.footprint.covers(outline)]
    return sorted(usable, key=lambda s: (s.cloud_cover, abs(s.datetime - plan.target), s.item_id))


def _fetch_window(plan: WindowPlan, out_dir: Path, provider: Provider, key: str,
                  max_masked_fraction: float, masked_classes: Sequence[int],
                  gdal_options: dict[str, str]) -> dict[str, Any]:
    """Try the candidates in order; write the first whose masked share is acceptable."""
    window, tried, scl_bytes = plan.window, [], 0
    with rasterio.Env(**gdal_options):
        for scene in plan.candidates:
            try:
                scl, read = read_scl_window(scene, window.transform, window.size_px)
                scl_bytes += read
                mask = masked_pixels(scl, masked_classes)
                fraction = float(mask.mean())
                if fraction > max_masked_fraction:
                    tried.append(f"{scene.item_id}: {fraction:.0%} masked")
                    continue
                dn, band_bytes = read_scene_window(scene, window.transform, window.size_px)
            except SceneError as error:
                tried.append(f"{scene.item_id}: unusable ({error})")
                continue
            except RasterioError as error:
                cause = f" ({error.__cause__})" if error.__cause__ else ""
                return {"status": "rejected", "reason": "HTTP read failed", "scl_bytes": scl_bytes,
                        "detail": f"{scene.item_id}: {error}{cause}", "tried": len(tried) + 1}
            dn[:, mask] = 0
            tags = {
                "GAIR_ACQUIRE_VERSION": ACQUIRE_VERSION, "ACQUIRE_SETTINGS": key,
                "SENSING_TIME": scene.sensing_time, "STAC_ITEM_ID": scene.item_id,
                "STAC_COLLECTION": scene.collection, "STAC_API": provider.url,
                "CLOUD_COVER": f"{scene.cloud_cover:g}", "MASKED_FRACTION": f"{fraction:.6f}",
                "SCENE_PROCESSING_BASELINE": scene.processing_baseline,
                "OFFSET_SOURCE": scene.offset_source, "OFFSET_NOTE": scene.offset_note,
                "ACQUIRE_BLOCK_BYTES": str(scl_bytes + band_bytes),
                "MASKED_SCL_CLASSES": ",".join(map(str, masked_classes)),
            }
            with replacing_file(out_dir / window.relpath) as staging:
                write_l2a_geotiff(staging, dn, CRS.from_epsg(window.epsg), window.transform,
                                  scene.tile_baseline, tags=tags)
            return {"status": "written", "scl_bytes": scl_bytes, "band_bytes": band_bytes,
                    "tried": len(tried) + 1}
    return {"status": "rejected", "reason": "every scene too cloudy", "scl_bytes": scl_bytes,
            "detail": f"more than {max_masked_fraction:.0%} of the window masked in each of "
                      f"{len(tried)} scene(s): " + "; ".join(tried), "tried": len(tried)}


def provenance_table(out_dir: Path, served: dict[str, list[str]]) -> pd.DataFrame:
    """One row per tile acquire wrote in ``out_dir`` (read back from the tiles' tags, so
    the table is whole after a resumed run), with the uuids of the views each serves."""
    rows = []
    for path in sorted(Path(out_dir).rglob("*.tif")):
        if path.name.startswith("."):
            continue
        try:
            with rasterio.open(path) as src:
                tags, epsg = src.tags(), src.crs.to_epsg() if src.crs else None
        except RasterioError:
            continue
        if tags.get("GAIR_ACQUIRE_VERSION") is None:
            continue
        relpath = path.relative_to(out_dir).as_posix()
        uuids = served.get(relpath, [])
        rows.append({
            "tile": relpath, "stac_item_id": tags.get("STAC_ITEM_ID"),
            "stac_collection": tags.get("STAC_COLLECTION"), "stac_api": tags.get("STAC_API"),
            "sensing_time": tags.get("SENSING_TIME"),
            "cloud_cover": float(tags.get("CLOUD_COVER", "nan")),
            "processing_baseline": tags.get("PROCESSING_BASELINE"),
            "scene_processing_baseline": tags.get("SCENE_PROCESSING_BASELINE"),
            "boa_add_offset": int(tags.get("BOA_ADD_OFFSET", 0)),
            "offset_source": tags.get("OFFSET_SOURCE"), "offset_note": tags.get("OFFSET_NOTE"),
            "masked_fraction": float(tags.get("MASKED_FRACTION", "nan")),
            "bytes_fetched": int(tags.get("ACQUIRE_BLOCK_BYTES", 0)), "epsg": epsg,
            "n_views": len(uuids), "view_uuids": uuids,
        })
    return pd.DataFrame(rows, columns=list(PROVENANCE_COLUMNS))


class _Outcomes:
    """What a run decided per window: views served, rejects, figures, unusable windows."""

    def __init__(self, key: str, ledger: dict[str, dict[str, str]]) -> None:
        self.key, self.ledger = key, ledger
        self.new_ledger: dict[str, dict[str, str]] = {}
        self.served: dict[str, list[str]] = {}
        self.rejects: list[dict[str, Any]] = []
        self.figures: dict[str, int] = {
            "windows": 0, "windows_reused": 0, "windows_known_unusable": 0,
            "windows_fetched": 0, "windows_rejected": 0, "stac_searches": 0, "scl_reads": 0,
            "block_bytes_read": 0}

    def reject(self, plan: WindowPlan, reason: str, detail: str) -> None:
        self.figures["windows_rejected"] += 1
        if reason in RECORDED_REASONS:
            self.new_ledger[plan.window.relpath] = {
                "stamp": _ledger_stamp(plan, self.key), "reason": reason, "detail": detail}
        self.rejects.extend({"stage": STAGE, "item": uuid, "reason": reason,
                             "detail": f"{plan.window.relpath}: {detail}"} for uuid in plan.uuids)


def _valid_coordinates(views: pd.DataFrame) -> pd.Series:
    lat = pd.to_numeric(views["lat"], errors="coerce")
    lon = pd.to_numeric(views["lon"], errors="coerce")
    return lat.between(-90, 90) & lon.between(-180, 180)  # NaN is neither


def _triage(plans: list[WindowPlan], out_dir: Path, outcomes: _Outcomes) -> list[WindowPlan]:
    """Settle the windows that need no network (tile there, known unusable, a foreign file
    in the way); return the others."""
    pending = []
    for plan in plans:
        state = _tile_state(out_dir / plan.window.relpath, outcomes.key)
        recorded = outcomes.ledger.get(plan.window.relpath)
        if state == "current":
            outcomes.served[plan.window.relpath] = plan.uuids
            outcomes.figures["windows_reused"] += 1
        elif state == "foreign":
            outcomes.reject(plan, "file in the way", "a file acquire did not write has this "
                            "tile's name; it is left alone")
        elif (state == "missing" and recorded
              and recorded["stamp"] == _ledger_stamp(plan, outcomes.key)):
            outcomes.figures["windows_known_unusable"] += 1
            outcomes.reject(plan, recorded["reason"], recorded["detail"])
        else:
            pending.append(plan)
    return pending


def _search(pending: list[WindowPlan], source: Provider, http: dict[str, Any],
            max_cloud_cover: float, page_size: int, max_items: int, pool: ThreadPoolExecutor,
            outcomes: _Outcomes) -> list[WindowPlan]:
    """One STAC search per area; each window gets its ranked candidates, or is rejected."""
    by_area: dict[str, list[WindowPlan]] = defaultdict(list)
    for plan in pending:
        by_area[plan.area].append(plan)
    if not by_area:
        return []
    try:
        client = open_catalogue(source, int(http["max_retry"]), float(http["retry_delay_s"]),
                                float(http["timeout_s"]))
    except InputConfigurationError:
        raise
    except Exception as error:  # any failure to reach the API (after retries)
        logger.error("STAC API %s unreachable: %s", source.url, error)
        for plan in pending:
            outcomes.reject(plan, "STAC API unreachable",
                            f"{source.url}: {type(error).__name__}: {error}")
        return []
    futures = {}
    for name, members in by_area.items():
        bbox = shapely.union_all([p.window.footprint() for p in members]).bounds
        futures[pool.submit(search_scenes, client, source, bbox,
                            min(p.start for p in members), max(p.end for p in members),
                            max_cloud_cover, page_size, max_items)] = name
    ready = []
    for future in as_completed(futures):
        name = futures[future]
        outcomes.figures["stac_searches"] += 1
        try:
            scenes, unusable = future.result()
        except Exception as error:  # the client retried already
            logger.error("STAC search for area %s failed: %s", name, error)
            for plan in by_area[name]:
                outcomes.reject(plan, "STAC search failed",
                                f"{source.url} (area {name}): {type(error).__name__}: {error}")
            continue
        for line in unusable:
            logger.warning("Unusable STAC item in area %s: %s", name, line)
        for plan in by_area[name]:
            plan.candidates = _candidates(plan, scenes)
            if plan.candidates:
                ready.append(plan)
            else:
                outcomes.reject(plan, "no scene", (
                    f"none of {len(scenes)} {source.collection} item(s) with cloud cover "
                    f"<= {max_cloud_cover:g}% found in area {name} covers the window in "
                    f"EPSG:{plan.window.epsg} between {plan.start:%Y-%m-%d} and "
                    f"{plan.end:%Y-%m-%d}"))
    return ready


def _fetch(ready: list[WindowPlan], out_dir: Path, source: Provider, key: str,
           max_masked_fraction: float, masked_classes: Sequence[int],
           options: dict[str, str], pool: ThreadPoolExecutor, progress: bool,
           outcomes: _Outcomes) -> None:
    """Fetch the windows, ``pool``'s workers at a time, with a progress bar."""
    futures = {pool.submit(_fetch_window, plan, out_dir, source, key, max_masked_fraction,
                           masked_classes, options): plan for plan in ready}
    bar = tqdm(as_completed(futures), total=len(futures), desc="acquire windows",
               unit="window", disable=not progress)
    for future in bar:
        plan = futures[future]
        try:
            outcome = future.result()
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)  # windows not begun stay unbegun
            raise
        outcomes.figures["scl_reads"] += outcome["tried"]
        outcomes.figures["block_bytes_read"] += outcome["scl_bytes"] + outcome.get("band_bytes", 0)
        if outcome["status"] == "written":
            outcomes.figures["windows_fetched"] += 1
            outcomes.served[plan.window.relpath] = plan.uuids
        else:
            outcomes.reject(plan, outcome["reason"], outcome["detail"])


def acquire_sentinel2(
    views: pd.DataFrame,
    output_dir: Path | str,
    provider: str = "earth_search",
    url: str | None = None,
    collection: str | None = None,
    asset_keys: dict[str, str] | None = None,
    tile_size_px: int = 96,
    area: dict[str, Any] | None = None,
    days_window: int = 60,
    default_date_range: Sequence[str] = ("2023-01-01", "2023-12-31"),
    max_cloud_cover: float = 30.0,
    max_masked_fraction: float = 0.5,
    masked_scl_classes: Sequence[int] = MASKED_SCL_CLASSES,
    workers: int = 4,
    page_size: int = 100,
    max_items_per_area: int = 500,
    http: dict[str, Any] | None = None,
    progress: bool = True,
    recheck_unusable: bool = False,
) -> AcquireResult:
    """Fetch a 10 m L2A tile for every window of ``tile_size_px`` that holds street views.

    Args:
        views: ``uuid``, ``lat``, ``lon`` and (optional) ``datetime_utc`` per street view.
        output_dir: where tiles go, ``EPSG<code>/S2L2A_E<x0>_N<y1>_<size>px.tif``; a
            folder ingest reads.
        provider: ``earth_search`` or ``planetary_computer``; ``url``, ``collection``
            and ``asset_keys`` (band -> asset key) override its defaults.
        area: ``{"by": "mgrs" | "grid", "grid_deg": 0.1}``: one STAC search per area.
        days_window: scenes within this many days of the views' capture dates.
        default_date_range: [start, end] for windows whose views have no date.
        max_cloud_cover: scene-level ``eo:cloud_cover`` limit (percent).
        max_masked_fraction: a scene whose SCL masks more of the window is skipped for
            the next candidate.
        masked_scl_classes: SCL classes set to nodata (default: 0, 1, 3, 8, 9, 10).
        workers: windows fetched at once (threads), and searches at once.
        http: ``max_retry``, ``retry_delay_s``, ``timeout_s`` for STAC and COG requests.
        progress: show a progress bar over windows.
        recheck_unusable: search again the windows an earlier run with the same settings
            found no usable scene for (recorded in :data:`UNUSABLE_LEDGER`); by default a
            rerun rejects them again without network requests.
    """
    out_dir = Path(output_dir)
    if (out_dir / MANIFEST_NAME).exists():
        raise InputConfigurationError(
            f"{out_dir} is a folder gair generated (it holds {MANIFEST_NAME}, e.g. the sample "
            "world); acquire writes real tiles: point `output_dir` (or sentinel2_dir in a "
            "Kedro environment) at a folder of real data")
    missing = [c for c in ("uuid", "lat", "lon") if c not in views.columns]
    if missing:
        raise InputConfigurationError(f"street views lack column(s): {', '.join(missing)}")
    area = {"by": "mgrs", "grid_deg": 0.1} | dict(area or {})
    http = {"max_retry": 3, "retry_delay_s": 1.0, "timeout_s": 30.0} | dict(http or {})
    source = provider_for(provider, url, collection, asset_keys)
    key = _settings_key(source, {
        "tile_size_px": tile_size_px, "days_window": days_window,
        "max_cloud_cover": max_cloud_cover, "max_masked_fraction": max_masked_fraction,
        "masked_scl_classes": list(masked_scl_classes), "asset_keys": dict(source.asset_keys),
        "default_date_range": list(default_date_range), "version": ACQUIRE_VERSION,
    })
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_abandoned_partials(out_dir)
    clear_gdal_http_cache()

    outcomes = _Outcomes(key, {} if recheck_unusable else _read_ledger(out_dir))
    valid = _valid_coordinates(views)
    outcomes.rejects += [{"stage": STAGE, "item": str(uuid), "reason": "invalid coordinates",
                          "detail": f"lat {lat}, lon {lon}"}
                         for uuid, lat, lon in views.loc[~valid, ["uuid", "lat", "lon"]]
                         .itertuples(index=False)]
    plans = plan_windows(views.loc[valid], tile_size_px, days_window, default_date_range)
    outcomes.figures["windows"] = len(plans)
    pending = _triage(plans, out_dir, outcomes)
    for plan in pending:
        plan.area = area_of(plan.window, area["by"], float(area["grid_deg"]))
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        ready = _search(pending, source, http, max_cloud_cover, page_size, max_items_per_area,
                        pool, outcomes)
        options = gdal_http_options(int(http["max_retry"]), float(http["retry_delay_s"]),
                                    float(http["timeout_s"]))
        _fetch(ready, out_dir, source, key, max_masked_fraction, masked_scl_classes, options,
               pool, progress, outcomes)
    if outcomes.new_ledger or outcomes.ledger:
        _write_ledger(out_dir, outcomes.new_ledger)  # this run's verdicts: nothing stale stays
    served = outcomes.served
    view_rows = [{"uuid": uuid, "tile": tile} for tile, uuids in served.items() for uuid in uuids]
    result = AcquireResult(
        tiles=provenance_table(out_dir, served),
        views=pd.DataFrame(view_rows, columns=["uuid", "tile"]),
        rejects=rejects_frame(outcomes.rejects), read=len(views), figures=outcomes.figures,
    )
    logger.info("Acquire: %s", result.report())
    return result
