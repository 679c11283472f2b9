"""The whole chain run once on a small world, for the pipeline and notebook tests."""

from __future__ import annotations

import pytest
import yaml
from kedro.framework.project import configure_project
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from tests.conftest import PROJECT_ROOT, small_world_config, temporary_conf
from tests.training.conftest import tiny_evaluate_params, tiny_pretrain_params


@pytest.fixture(scope="session")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("project")
    pair = yaml.safe_load((PROJECT_ROOT / "conf/base/parameters_pair.yml").read_text())
    pair["pair"]["patch_size_px"] = 32
    pair["pair"]["split"]["block_km"] = 0.5
    pretrain = tiny_pretrain_params(max_epochs=1) | {"run_dir": str(tmp / "data" / "run")}
    conf = temporary_conf(tmp, {
        "parameters_sample_world": {"sample_world": small_world_config().model_dump(mode="json")},
        "parameters_pair": pair,
        "parameters_pretrain": {"pretrain": pretrain},
        "parameters_evaluate": {"evaluate": tiny_evaluate_params(str(tmp / "data" / "evaluate"))},
        "parameters_sweep": {"sweep": {
            "study_name": "pipeline-test", "storage": "sqlite",
            "storage_dir": str(tmp / "data" / "sweep"), "n_trials": 2, "total_trials": 2,
            "pruner": {"type": "none"},
            "budget": {"trainer.max_epochs": 1, "trainer.enable_progress_bar": False},
            "search_space": {"loss.temperature": {"type": "float", "low": 0.05, "high": 0.2}},
        }},
    })
    bootstrap_project(PROJECT_ROOT)
    configure_project("gair")
    with KedroSession.create(project_path=PROJECT_ROOT, conf_source=str(conf)) as session:
        session.run(pipeline_names=["sample_world", "ingest", "pair", "pretrain", "evaluate",
                                    "sweep"])
    return tmp / "data"


