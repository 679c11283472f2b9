"""The catalog declares every dataset that should persist, and writes where DVC looks.

A dataset that no catalog entry and no factory pattern matches is silently kept in memory
by Kedro: a misspelt entry or pattern would lose an artefact without an error. So every
dataset the registered pipelines read or write either resolves from the catalog or is one
of the datasets meant to live in memory, and every path a DVC stage lists as an output is
one its pipeline writes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from kedro.framework.project import configure_project, pipelines
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from kedro.io import MemoryDataset

from tests.conftest import PROJECT_ROOT

IN_MEMORY = {
    "pair_candidates", "pair_placement_rejects",  # pair: placement, before extraction
    "sentinel2_tile_counts", "sentinel2_tile_rejects",  # ingest: merged into its report
    "street_view_counts", "street_view_rejects",  # and its rejects table
}
"""Datasets passed between nodes and never saved: no catalog entry, no factory."""

HOOK_PROVIDED = {"sweep_storage_credentials", "tracking_credentials"}
"""Credentials the project's hooks put into the catalog (``gair.hooks``)."""

RUN_FOLDERS = {"data/06_models/pretrain_run", "data/06_models/evaluate_runs"}
"""DVC outputs the trainer writes (``pretrain.run_dir``, ``evaluate.run_dir``), not the catalog."""

ENVIRONMENTS = sorted(p.name for p in (PROJECT_ROOT / "conf").iterdir()
                      if p.is_dir() and p.name != "base")


def _datasets(pipeline) -> set[str]:
    return {name for name in pipeline.datasets()
            if name != "parameters" and not name.startswith("params:")}


@pytest.fixture(scope="module", params=ENVIRONMENTS)
def catalog(request):
    bootstrap_project(PROJECT_ROOT)
    configure_project("gair")
    with KedroSession.create(project_path=PROJECT_ROOT, env=request.param) as session:
        return session.load_context().catalog


def _path(catalog, name: str) -> str:
    """The project-relative file or folder a catalog dataset resolves to."""
    config = catalog.config_resolver.resolve_pattern(name)
    path = Path(config.get("filepath") or config["path"])
    return (path if path.is_absolute() else PROJECT_ROOT / path).relative_to(
        PROJECT_ROOT).as_posix()


def test_every_dataset_of_every_pipeline_is_declared_or_meant_to_be_in_memory(catalog):
    used = set().union(*(_datasets(p) for p in pipelines.values()))
    undeclared = sorted(name for name in used - IN_MEMORY if name not in catalog)
    assert not undeclared, f"no catalog entry or factory matches {undeclared}: kept in memory"
    declared = sorted(name for name in IN_MEMORY if name in catalog)
    assert not declared, f"{declared} are meant to stay in memory but the catalog matches them"
    assert IN_MEMORY <= used, f"{sorted(IN_MEMORY - used)} are used by no pipeline"


def test_every_catalog_dataset_but_the_declared_ones_persists(catalog):
    used = set().union(*(_datasets(p) for p in pipelines.values()))
    in_memory = sorted(name for name in used
                       if name in catalog and isinstance(catalog.get(name), MemoryDataset))
    assert in_memory == sorted({"sample_world_layout", *HOOK_PROVIDED})


def test_every_factory_pattern_serves_a_pipeline(catalog):
    used = set().union(*(_datasets(p) for p in pipelines.values()))
    patterns = set(catalog.config_resolver.list_patterns()) - {"{default}"}
    matched = {catalog.config_resolver.match_dataset_pattern(name) for name in used}
    assert patterns <= matched, f"patterns no dataset uses: {sorted(patterns - matched)}"


def test_every_dvc_output_is_written_by_its_pipeline(catalog):
    stages = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"]
    for stage, spec in stages.items():
        written = {_path(catalog, name) for name in pipelines[stage].all_outputs()
                   if name in catalog and not isinstance(catalog.get(name), MemoryDataset)}
        outs = {next(iter(o)) if isinstance(o, dict) else o
                for o in spec["outs"] + spec.get("metrics", [])}
        missing = sorted(outs - written - RUN_FOLDERS)
        assert not missing, f"dvc.yaml stage {stage} lists outputs its pipeline does not write: " \
                            f"{missing}"
