"""The pipelines on a small world in one temporary project, each run once and only when a
test needs its outputs: a test asks for the fixture of the last pipeline it reads
(``paired``, ``pretrained``, ``evaluated``, ``embedded``, ``swept``), which runs the
pipelines below it first. Each returns the project's data folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from kedro.framework.project import configure_project
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from tests.conftest import PROJECT_ROOT, small_world_config, temporary_conf, write_eurosat
from tests.training.conftest import tiny_evaluate_params, tiny_pretrain_params


def _benchmarks(world: dict, root: Path) -> dict:
    """Tiny real-format benchmarks over the small world's street views (the run below
    generates the same world: same configuration, same seed)."""
    import pandas as pd

    truth = pd.read_csv(world["truth"] / "street_views.csv")
    metadata = pd.read_csv(world["streetscapes"] / "metadata_common_attributes.csv")
    perception = pd.read_csv(world["streetscapes"] / "perception.csv")
    labels = root / "labels"
    labels.mkdir(parents=True)
    for name in ("Safe", "Lively"):
        perception[["uuid", name]].to_csv(labels / f"{name}.csv", index=False)
    table = truth[["uuid", "affluence", "landcover_name"]]
    pd.concat([table, table.iloc[:1]]).to_csv(root / "sv.csv", index=False)  # one duplicate
    points = metadata[["lat", "lon"]].assign(label=truth["landcover_name"].to_numpy())
    points.loc[len(points)] = [95.0, 0.0, "water"]  # out of range: rejected
    points.to_csv(root / "points.csv", index=False)
    write_eurosat(root / "EuroSAT_MS", classes=("Forest", "River", "SeaLake"), per_class=6)
    return {
        "eurosat_ms": {"path": str(root / "EuroSAT_MS"), "seed": 1, "size_px": 8},
        "street_view_labels": {"path": str(labels), "regress": ["Safe", "Lively"]},
        "street_view_table": {"path": str(root / "sv.csv"), "regress": ["affluence"],
                              "classify": ["landcover_name"]},
        "points": {"path": str(root / "points.csv"), "classify": ["label"], "block_deg": 0.002},
    }


class Project:
    """A temporary Kedro project configuration whose pipelines run on request, each once."""

    def __init__(self, conf: Path) -> None:
        self.conf = conf
        self.data = conf.parent / "data"
        self.done: list[str] = []

    def run(self, *pipelines: str) -> Path:
        todo = [name for name in pipelines if name not in self.done]
        if todo:
            bootstrap_project(PROJECT_ROOT)
            configure_project("gair")
            with KedroSession.create(project_path=PROJECT_ROOT,
                                     conf_source=str(self.conf)) as session:
                session.run(pipeline_names=todo)
            self.done += todo
        return self.data


@pytest.fixture(scope="session")
def project(tmp_path_factory, small_world) -> Project:
    tmp = tmp_path_factory.mktemp("project")
    pair = yaml.safe_load((PROJECT_ROOT / "conf/base/parameters_pair.yml").read_text())
    pair["pair"]["patch_size_px"] = 32
    pair["pair"]["split"]["block_km"] = 0.5
    pretrain = tiny_pretrain_params(max_epochs=1) | {"run_dir": str(tmp / "data" / "run")}
    conf = temporary_conf(tmp, {
        "parameters_sample_world": {"sample_world": small_world_config().model_dump(mode="json")},
        "parameters_pair": pair,
        "parameters_pretrain": {"pretrain": pretrain},
        "parameters_evaluate": {"evaluate": tiny_evaluate_params(str(tmp / "data" / "evaluate"))
                                | {"benchmarks": _benchmarks(small_world, tmp / "benchmarks")}},
        "parameters_sweep": {"sweep": {
            "study_name": "pipeline-test", "storage": "sqlite",
            "storage_dir": str(tmp / "data" / "sweep"), "n_trials": 2, "total_trials": 2,
            "pruner": {"type": "none"},
            "budget": {"trainer.max_epochs": 1, "trainer.enable_progress_bar": False},
            "search_space": {"loss.temperature": {"type": "float", "low": 0.05, "high": 0.2}},
        }},
    })
    return Project(conf)


@pytest.fixture(scope="session")
def paired(project: Project) -> Path:
    return project.run("sample_world", "ingest", "pair")


@pytest.fixture(scope="session")
def pretrained(project: Project, paired: Path) -> Path:
    return project.run("pretrain")


@pytest.fixture(scope="session")
def evaluated(project: Project, pretrained: Path) -> Path:
    return project.run("evaluate")


@pytest.fixture(scope="session")
def embedded(project: Project, pretrained: Path) -> Path:
    return project.run("embed")


@pytest.fixture(scope="session")
def swept(project: Project, paired: Path) -> Path:
    return project.run("sweep")
