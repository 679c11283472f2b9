"""Node functions called directly, without Kedro, on generated inputs with known answers."""

from __future__ import annotations

import pandas as pd
import pytest

from gair.parameters import EvaluateParams, Sentinel2Params, StreetscapesParams
from gair.pipelines.evaluate.nodes import report_results
from gair.pipelines.ingest.nodes import index_sentinel2_tiles, ingest_street_views, report_ingest
from gair.pipelines.pretrain.nodes import plot_training_curves


def test_ingest_nodes_count_every_input_once(small_world):
    views, view_rejects, view_report = ingest_street_views(small_world["streetscapes"],
                                                           StreetscapesParams())
    tiles, tile_rejects, tile_report = index_sentinel2_tiles(small_world["sentinel2"],
                                                             Sentinel2Params())
    truth = pd.read_csv(small_world["truth"] / "street_views.csv")
    assert view_report["read"] == len(truth) == len(views) + len(view_rejects)
    assert tile_report["accepted"] == len(tiles) == 3 and tile_report["rejected"] == 0
    report, rejects = report_ingest(view_report, tile_report, view_rejects, tile_rejects)
    assert report == {"street_views": view_report, "sentinel2_tiles": tile_report}
    assert len(rejects) == len(view_rejects) + len(tile_rejects)


def _results(scores: dict[str, dict[str, float]]) -> pd.DataFrame:
    """A long results table: model -> {task: headline score}."""
    metric = {"sv_landcover": "acc", "rs_landcover": "acc", "geolocalisation": "median_km",
              "retrieval": "r@1", "retrieval_nili_patch": "patch_r@1",
              "retrieval_centre": "patch_r@1"}
    return pd.DataFrame([{"task": task, "model": model, "metric": metric[task], "value": value}
                         for model, tasks in scores.items() for task, value in tasks.items()],
                        columns=["task", "model", "metric", "value"])


def test_report_results_counts_wins_beyond_the_seed_spread_and_reports_nili_margins():
    params = EvaluateParams(seeds=[0, 1])
    results = _results({
        # Downstream tasks: SV land cover, GAIR ahead by 0.3 with a seed spread of 0.05 (a
        # win); RS land cover, ahead by 0.02 but the random seeds differ by 0.1 (no win).
        # Retrieval and geolocalisation are pretraining tasks: in the table, never counted.
        "gair_s0": {"sv_landcover": 0.80, "geolocalisation": 500.0, "rs_landcover": 0.52,
                    "retrieval": 0.3, "retrieval_nili_patch": 0.6, "retrieval_centre": 0.5},
        "gair_s1": {"sv_landcover": 0.85, "geolocalisation": 500.0, "rs_landcover": 0.52,
                    "retrieval": 0.3, "retrieval_nili_patch": 0.7, "retrieval_centre": 0.5},
        "random_s0": {"sv_landcover": 0.50, "geolocalisation": 400.0, "rs_landcover": 0.45,
                      "retrieval": 0.1, "retrieval_nili_patch": 0.2, "retrieval_centre": 0.3},
        "random_s1": {"sv_landcover": 0.55, "geolocalisation": 400.0, "rs_landcover": 0.55,
                      "retrieval": 0.1, "retrieval_nili_patch": 0.2, "retrieval_centre": 0.3},
        "chance": {"sv_landcover": 0.25},
    })
    metrics, table, figure = report_results(results, results.iloc[:0], params)
    assert metrics["eval/summary/gair_beats_random"] == 1
    assert metrics["eval/summary/downstream_tasks"] == 2
    assert metrics["eval/sv_landcover/gair_s1/acc"] == 0.85
    assert metrics["eval/summary/nili_margin/gair/retrieval_centre"] == pytest.approx(0.15)
    assert metrics["eval/summary/nili_margin/random/retrieval_centre"] == pytest.approx(-0.1)
    assert "GAIR beats random weights by more than the seed spread on 1 of 2" in table
    assert "| 500.000 | 500.000 | **400.000** | **400.000** | – |" in table  # lower is better
    assert figure.axes


def test_training_curves_say_when_there_is_no_validation_split():
    history = pd.DataFrame({"step": [0, 1, 2], "epoch": [0, 0, 0],
                            "train/loss": [3.0, 2.5, 2.0]})
    figure = plot_training_curves(history)
    loss, _, retrieval = figure.axes
    assert list(loss.lines[0].get_ydata()) == [3.0, 2.5, 2.0]
    assert [t.get_text() for t in retrieval.texts] == ["no validation split"]
