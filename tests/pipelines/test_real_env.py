"""A Kedro environment pointed at the real samples: `kedro run --env real --pipelines ingest,pair`."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml
from kedro.framework.project import configure_project
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from tests.conftest import PROJECT_ROOT, temporary_conf


@pytest.mark.realdata
@pytest.mark.slow
def test_real_environment_ingests_and_pairs_the_real_samples(realdata, tmp_path):
    conf = temporary_conf(tmp_path)
    (conf / "real").mkdir()
    (conf / "real" / "globals.yml").write_text(yaml.safe_dump({
        "data_dir": str(tmp_path / "data"),
        "sample_world_dir": str(tmp_path / "data" / "01_raw" / "sample"),
        "streetscapes_dir": str(realdata / "global_streetscapes"),
        "sentinel2_dir": str(realdata / "sentinel2_l2a_chips"),
    }))
    labels = [f"labels_sample_output/{name}.csv" for name in ("Safe", "Wealthy", "weather")]
    (conf / "real" / "parameters_ingest.yml").write_text(yaml.safe_dump({"ingest": {
        "streetscapes": {"metadata_table": "tables/02_metadata_common_attributes.csv",
                         "label_tables": labels, "images_dir": "img"},
        # The chips mix baselines and do not say which: the user states one, and the offset
        # check rejects the chips whose data contradict it (their blue band lacks the +1000).
        "sentinel2": {"processing_baseline": "05.09"},
    }}))
    bootstrap_project(PROJECT_ROOT)
    configure_project("gair")
    with KedroSession.create(project_path=PROJECT_ROOT, conf_source=str(conf), env="real") as s:
        s.run(pipeline_names=["ingest", "pair"])

    report = json.loads((tmp_path / "data" / "08_reporting" / "ingest_report.json").read_text())
    assert report["street_views"] == {"read": 2319, "accepted": 25, "rejected": 2294,
                                      "rejected_by_reason": {"image missing": 2294}}
    assert report["sentinel2_tiles"] == {
        "read": 23, "accepted": 11, "rejected": 12,
        "rejected_by_reason": {"BOA offset contradicts the data": 12}}
    pair_report = json.loads((tmp_path / "data" / "08_reporting" / "pair_report.json").read_text())
    # Stuttgart and Singapore are in none of the worldwide chips: all 25 are rejected, counted.
    assert pair_report["read"] == 25 == pair_report["rejected"]
    rejects = pd.read_csv(tmp_path / "data" / "05_model_input" / "pair_rejects.csv")
    assert set(rejects["reason"]) == {"outside every tile"}
