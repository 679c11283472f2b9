"""The sample_world, ingest, pair, pretrain and sweep pipelines on a small world in a
temporary data folder."""

from __future__ import annotations

import json

import geopandas as gpd
import pandas as pd
import pytest
import yaml


@pytest.mark.slow
def test_ingest_outputs(paired):
    report = json.loads((paired / "08_reporting" / "ingest_report.json").read_text())
    views = gpd.read_parquet(paired / "02_intermediate" / "street_views.parquet")
    tiles = gpd.read_parquet(paired / "02_intermediate" / "sentinel2_tiles.parquet")
    assert report["street_views"]["accepted"] == len(views) == report["street_views"]["read"]
    assert report["sentinel2_tiles"]["accepted"] == len(tiles) == 3
    assert views.crs.to_epsg() == 4326 and tiles.crs.to_epsg() == 4326
    assert {"footprint" if c == "geometry" else c for c in tiles.columns} >= {
        "tile_id", "path", "crs", "transform", "band_map", "valid_fraction", "footprint"}
    assert (paired / "02_intermediate" / "ingest_rejects.csv").is_file()


@pytest.mark.slow
def test_pair_outputs(paired):
    pairs = gpd.read_parquet(paired / "05_model_input" / "pairs.parquet")
    rejects = pd.read_csv(paired / "05_model_input" / "pair_rejects.csv")
    report = json.loads((paired / "08_reporting" / "pair_report.json").read_text())
    assert {"uuid", "patch_id", "tile_id", "lat", "lon", "qx", "qy", "split"} <= set(pairs.columns)
    assert pairs.crs.to_epsg() == 4326
    assert report["read"] == len(pairs) + len(rejects) == report["accepted"] + report["rejected"]
    assert report["rejected_by_reason"].get("outside every tile") == 2
    shards = sorted((paired / "05_model_input" / "shards").rglob("*.tar"))
    assert {p.parent.name for p in shards} == set(pairs["split"])
    assert (paired / "08_reporting" / "pairing_map.png").stat().st_size > 10_000


@pytest.mark.slow
def test_pretrain_outputs(pretrained):
    import torch

    checkpoint = torch.load(pretrained / "06_models" / "gair.ckpt", weights_only=True)
    assert any(k.startswith("model.nili.") for k in checkpoint["state_dict"])
    metrics = json.loads((pretrained / "08_reporting" / "pretrain_metrics.json").read_text())
    assert {"pretrain/val/loss", "pretrain/val/r@1", "pretrain/val/chance_r@1"} <= set(metrics)
    assert metrics["pretrain/epochs"] == 1
    history = pd.read_csv(pretrained / "08_reporting" / "pretrain_history.csv")
    assert history["train/loss"].notna().any()
    assert (pretrained / "08_reporting" / "pretrain_curves.png").stat().st_size > 10_000


@pytest.mark.slow
def test_sweep_outputs(swept):
    best = yaml.safe_load((swept.parent / "conf" / "sweep" / "parameters_pretrain.yml").read_text())
    trials = pd.read_csv(swept / "08_reporting" / "sweep_trials.csv")
    assert len(trials) == 2 and set(trials["state"]) == {"COMPLETE"}
    assert best["pretrain"]["loss"]["temperature"] in set(trials["params_loss.temperature"])
    assert (swept / "sweep" / "optuna.db").is_file()
    for name in ("sweep_history", "sweep_importances", "sweep_parallel_coordinates"):
        assert (swept / "08_reporting" / f"{name}.png").stat().st_size > 5_000
