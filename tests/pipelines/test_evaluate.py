"""`kedro run --pipelines evaluate` on the small world (the `evaluated` fixture)."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest

from gair.evaluation.report import seed_comparison
from gair.evaluation.suite import DOWNSTREAM, TASKS, ModelEmbeddings

MODELS = {"gair_s0", "gair_s1", "random_s0", "random_s1", "incl_only"}


@pytest.mark.slow
def test_embeddings_are_geoparquet_for_every_model(evaluated):
    folder = evaluated / "07_model_output" / "embeddings"
    assert set(json.loads((folder / "models.json").read_text())) == MODELS
    pairs = gpd.read_parquet(folder / "gair_s0" / "pairs.parquet")
    assert pairs.crs.to_epsg() == 4326
    assert len(pairs) == len(gpd.read_parquet(evaluated / "05_model_input" / "pairs.parquet"))
    embedded = ModelEmbeddings.read(folder / "gair_s0")
    for table, column in ((embedded.pairs, "sv"), (embedded.pairs, "rs_query"),
                          (embedded.patches, "rs_global"), (embedded.points, "location"),
                          (embedded.gallery, "location")):
        vectors = np.stack(table[column].to_numpy())
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert embedded.tokens.shape[0] == len(embedded.patches)
    random = ModelEmbeddings.read(folder / "random_s0")
    assert not np.allclose(np.stack(random.pairs["sv"]), np.stack(embedded.pairs["sv"]))


@pytest.mark.slow
def test_metrics_table_and_plots(evaluated):
    metrics = json.loads((evaluated / "08_reporting" / "metrics.json").read_text())
    for task in DOWNSTREAM:
        for model in MODELS:
            assert any(k.startswith(f"eval/{task}/{model}/") for k in metrics), (task, model)
    assert "eval/retrieval/gair_s0/r@1" in metrics
    assert "eval/geolocalisation/gair_s0/median_km" in metrics
    assert "eval/sv_landcover/location_only/acc" in metrics
    assert metrics["eval/summary/downstream_tasks"] == 6
    results = pd.read_csv(evaluated / "08_reporting" / "evaluation_results.csv")
    # The headline count is the results table's: tasks where GAIR's seeds beat random's
    # by more than the seed spread (tests/evaluation/test_suite.py checks the rule).
    seeds = [0, 1]
    wins = seed_comparison(results[results["model"] != "chance"],
                           [f"gair_s{s}" for s in seeds], [f"random_s{s}" for s in seeds])
    assert metrics["eval/summary/gair_beats_random"] == int(wins["gair_wins"].sum())
    assert (f"GAIR beats random weights by more than the seed spread on "
            f"{int(wins['gair_wins'].sum())} of 6") in (evaluated / "08_reporting" / "evaluation.md"
                                                         ).read_text()
    assert set(results["model"]) == MODELS | {"location_only", "chance"}
    table = (evaluated / "08_reporting" / "evaluation.md").read_text()
    for task in TASKS:
        assert task.title in table
    assert "**" in table and "GAIR beats random weights" in table
    for name in ("evaluation.png", "retrieval_examples.png", "geolocalisation_map.png"):
        assert (evaluated / "08_reporting" / name).stat().st_size > 10_000, name
    report = json.loads((evaluated / "08_reporting" / "eval_task_report.json").read_text())
    patches = report["patches"]
    assert patches["kept"] + patches["left_out_straddling_splits"] + patches[
        "left_out_overlapping_other_split_pairs"] == patches["candidates"]


@pytest.mark.slow
def test_real_benchmarks_are_scored_for_every_model(evaluated):
    metrics = json.loads((evaluated / "08_reporting" / "metrics.json").read_text())
    for model in MODELS:
        eurosat = {k: metrics[f"eval/bench_eurosat_ms/{model}/{k}"] for k in ("acc", "n_train",
                                                                             "n_test")}
        # 3 classes x 6 images split 60/20/20; the classes differ by 500 DN in every band
        # against noise of 20 (write_eurosat), so any encoder's pooled features separate them.
        assert eurosat == {"acc": 1.0, "n_train": 11, "n_test": 3}
        assert f"eval/bench_street_view_labels/{model}/r2/Safe" in metrics
        assert f"eval/bench_street_view_table/{model}/r2" in metrics
        landcover = f"eval/bench_street_view_table.landcover_name/{model}"
        hits = metrics[f"{landcover}/acc"] * metrics[f"{landcover}/n_test"]
        assert hits == pytest.approx(round(hits)), "an accuracy counts whole test views"
        assert f"eval/bench_points.label/{model}/acc" in metrics
    rejects = pd.read_csv(evaluated / "08_reporting" / "benchmark_rejects.csv")
    assert {"duplicate uuid", "lat/lon out of range", "street view not paired"} <= set(
        rejects["reason"])
    assert "| eurosat_ms | acc |" in (evaluated / "08_reporting" / "evaluation.md").read_text()
