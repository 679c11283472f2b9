"""Nodes of the ``pair`` pipeline: street views placed in RS patches, split, sharded."""

import logging
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from gair.geo.pairing import TileGrid, days_apart, locate_in_tiles, pair_points, scene_times
from gair.io.directories import stage_directory
from gair.io.rejects import count_report, rejects_frame
from gair.io.shards import REJECTS_TABLE, SAMPLES_TABLE, ExtractionSettings, extract_shards
from gair.parameters import PairParams
from gair.reporting.maps import pairing_map

logger = logging.getLogger(__name__)


def plan_pairs(
    street_views: gpd.GeoDataFrame, tiles: gpd.GeoDataFrame, params: PairParams
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Tile, patch, query coordinate and split of every street view inside a tile."""
    if tiles.empty:
        raise ValueError("no Sentinel-2 tiles were accepted by ingest; nothing to pair with")
    lat, lon = street_views["lat"].to_numpy(), street_views["lon"].to_numpy()
    captured = capture_times(street_views)
    placed = pair_points(
        lat, lon, tiles, params.patch_size_px, params.split.block_km,
        dict(params.split.fractions), params.split.seed, captured, params.max_days_apart,
    )
    candidates = pd.concat(
        [street_views[["uuid", "lat", "lon", "image_path"]].reset_index(drop=True),
         pd.DataFrame({"capture_time": pd.to_datetime(captured).tz_localize("UTC")}), placed],
        axis=1,
    )
    scene = dict(zip(tiles["tile_id"], scene_times(tiles), strict=True))
    candidates.insert(candidates.columns.get_loc("scene_days_apart"), "scene_time",
                      pd.to_datetime(candidates["tile_id"].map(scene)).dt.tz_localize("UTC"))
    outside = candidates["tile_id"].isna()
    overlapping = candidates["overlaps"].notna()
    out_of_date = {}
    if params.max_days_apart is not None and outside.any():
        # Of the unplaced views, those a tile holds whatever its date are out of date.
        unplaced = np.flatnonzero(outside.to_numpy())
        grid = TileGrid.from_index(tiles)
        holder, _, _ = locate_in_tiles(lat[unplaced], lon[unplaced], grid)
        out_of_date = {
            i: f"{grid.tile_ids[t]} (scene {_day(grid.sensed[t])}, captured "
               f"{_day(captured[i])}): {_days(days_apart(captured[i], grid.sensed[t]))}, "
               f"pair.max_days_apart is {params.max_days_apart:g}"
            for i, t in zip(unplaced, holder, strict=True) if t >= 0}
    rejects = rejects_frame([
        *({"stage": "pair/place", "file": "", "row": None, "item": uuid,
           "reason": "scene too far from capture" if i in out_of_date else "outside every tile",
           "detail": out_of_date.get(i, f"lat={lat}, lon={lon}")}
          for i, uuid, lat, lon in candidates.loc[outside, ["uuid", "lat", "lon"]]
          .itertuples()),
        *({"stage": "pair/place", "file": "", "row": None, "item": uuid,
           "reason": "patch overlaps another split",
           "detail": f"{patch_id} ({split}) shares ground with {other}"}
          for uuid, patch_id, split, other in candidates.loc[
              overlapping, ["uuid", "patch_id", "split", "overlaps"]].itertuples(index=False)),
    ])
    used = ~outside & ~overlapping
    return candidates.loc[used].drop(columns="overlaps").reset_index(drop=True), rejects


def capture_times(street_views: pd.DataFrame) -> np.ndarray:
    """Capture time per view as naive UTC datetime64[ns] (NaT where unknown)."""
    if "datetime_utc" not in street_views:
        return np.full(len(street_views), np.datetime64("NaT"), "datetime64[ns]")
    times = pd.to_datetime(street_views["datetime_utc"], utc=True)
    return times.dt.tz_localize(None).to_numpy("datetime64[ns]")


def _day(time: np.datetime64) -> str:
    return "unknown" if np.isnat(time) else str(time.astype("datetime64[D]"))


def _days(apart: float) -> str:
    return "date unknown" if np.isnan(apart) else f"{apart:.0f} days apart"


def extract_training_shards(
    candidates: pd.DataFrame, tiles: gpd.GeoDataFrame, sentinel2_dir: Path,
    streetscapes_dir: Path, params: PairParams, staging_dir: str,
) -> Path:
    """Patches and street views extracted into shards (in parallel processes), with their
    sample and reject tables, in a folder under ``staging_dir`` for the catalog to move in."""
    settings = ExtractionSettings(
        patch_size=params.patch_size_px,
        min_valid_fraction=params.min_valid_fraction,
        sv_short_side=params.shards.sv_short_side_px,
        jpeg_quality=params.shards.jpeg_quality,
    )

    def write(directory: Path) -> dict[str, Any]:
        samples, rejects = extract_shards(
            candidates, tiles, sentinel2_dir, streetscapes_dir, directory, settings,
            params.shards.samples_per_shard, params.shards.workers,
        )
        samples.to_parquet(directory / SAMPLES_TABLE, index=False)
        rejects.to_csv(directory / REJECTS_TABLE, index=False)
        return {"params": params.model_dump(mode="json"), "samples": len(samples),
                "rejected": len(rejects),
                "splits": samples["split"].value_counts().sort_index().to_dict()}

    return stage_directory(staging_dir, "shards", write)


def collect_pairs(
    shards_dir: Path, street_views: gpd.GeoDataFrame, placement_rejects: pd.DataFrame
) -> tuple[gpd.GeoDataFrame, pd.DataFrame, dict]:
    """The pairs table (GeoParquet), every street view not paired with its reason, counts."""
    samples = pd.read_parquet(shards_dir / SAMPLES_TABLE)
    extraction_rejects = pd.read_csv(shards_dir / REJECTS_TABLE, dtype=str, keep_default_na=False)
    rejects = pd.concat([placement_rejects, rejects_frame(extraction_rejects.to_dict("records"))],
                        ignore_index=True)
    pairs = gpd.GeoDataFrame(
        samples, geometry=gpd.points_from_xy(samples["lon"], samples["lat"]), crs="EPSG:4326"
    )
    report = count_report(len(street_views), len(pairs), rejects)
    report["splits"] = {str(k): int(v) for k, v in pairs["split"].value_counts().sort_index().items()}
    report["patches"] = int(pairs["patch_id"].nunique())
    logger.info("Pairs: %s", report)
    return pairs, rejects, report


def plot_pairing_map(
    pairs: gpd.GeoDataFrame, tiles: gpd.GeoDataFrame, rejects: pd.DataFrame,
    street_views: gpd.GeoDataFrame, params: PairParams,
) -> Figure:
    """Tiles, patches and street views by split; rejected views marked."""
    rejected = street_views[street_views["uuid"].isin(rejects["item"])]
    return pairing_map(pairs, tiles, rejected, params.patch_size_px)
