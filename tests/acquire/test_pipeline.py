"""`kedro run --pipelines acquire` against the local STAC API; ingest and pair read the tiles."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from kedro.framework.project import configure_project
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from gair.geo.pairing import pair_points
from gair.io.sentinel2 import read_tile_index
from tests.acquire.conftest import TILE_PX
from tests.conftest import PROJECT_ROOT, temporary_conf


@pytest.mark.slow
def test_kedro_acquire_then_ingest_and_pair_accept_the_tiles(world, server, tmp_path):
    tiles_dir = tmp_path / "sentinel2"
    conf = temporary_conf(tmp_path, {"parameters_acquire": {"acquire": {
        "url": server.api, "output_dir": str(tiles_dir), "tile_size_px": TILE_PX,
        "days_window": 30, "default_date_range": ["2023-06-01", "2023-06-30"],
        "workers": 2, "progress": False,
        "http": {"max_retry": 1, "retry_delay_s": 0.05, "timeout_s": 5},
    }}})
    data = tmp_path / "data"
    (data / "02_intermediate").mkdir(parents=True)
    world.views.to_parquet(data / "02_intermediate" / "street_views.parquet")  # as ingest writes
    bootstrap_project(PROJECT_ROOT)
    configure_project("gair")
    with KedroSession.create(project_path=PROJECT_ROOT, conf_source=str(conf)) as session:
        # The pipeline starts with ingest's street-view node; its output is given here.
        session.run(pipeline_names=["acquire"], node_names=["acquire_tiles_node"])

    report = json.loads((data / "08_reporting" / "acquire_report.json").read_text())
    provenance = pd.read_parquet(data / "02_intermediate" / "acquire_tiles.parquet")
    rejects = pd.read_csv(data / "02_intermediate" / "acquire_rejects.csv")
    assert report["read"] == len(world.views) == report["accepted"] + len(rejects)
    assert len(provenance) == report["windows_fetched"] == 5

    index = read_tile_index(tiles_dir)  # what ingest does with the folder
    assert len(index.rejects) == 0 and len(index.tiles) == 5
    served = gpd.GeoDataFrame(world.views).set_index("uuid").drop(index=rejects["item"])
    pairs = pair_points(served["lat"].to_numpy(), served["lon"].to_numpy(), index.tiles,
                        patch_size=TILE_PX, block_km=0.5,
                        fractions={"train": 0.8, "val": 0.1, "test": 0.1}, seed=0)
    assert pairs["tile_id"].notna().all()  # every served view sits in its tile's one patch
    assert np.all(np.abs(pairs[["qx", "qy"]].to_numpy(float)) < 1)
    owner = {uuid: tile for tile, uuids in zip(provenance["tile"], provenance["view_uuids"],
                                               strict=True) for uuid in uuids}
    assert [owner[u] for u in served.index] == pairs["tile_id"].tolist()


def test_acquire_starts_from_the_raw_street_views():
    """A user with street views only runs `acquire` first: it reads them itself (ingest as a
    whole would stop on a folder without tiles)."""
    from gair.pipelines.acquire.pipeline import create_pipeline

    pipeline = create_pipeline()
    assert [n.name for n in pipeline.nodes] == ["ingest_street_views_node", "acquire_tiles_node"]
    assert pipeline.inputs() == {"streetscapes_raw", "params:ingest.streetscapes",
                                 "params:acquire"}
