"""Each dvc.yaml stage depends on all the code its pipeline runs, derived from the import graph.

A stage is ``kedro run --pipelines <name>``: Kedro imports the project's settings (and hooks),
the pipeline registry, the catalog's dataset classes and the requested pipeline package;
Python runs every parent package's ``__init__`` on the way. A module of that closure (grimp
sees function-level imports too) that no ``src/...`` dependency of the stage covers would
let ``dvc repro`` call outputs up to date that the code no longer makes.
"""

from __future__ import annotations

from pathlib import Path

import grimp
import pytest
import yaml

from tests.conftest import PROJECT_ROOT

SRC = PROJECT_ROOT / "src"
KEDRO_ENTRY_POINTS = ("gair.settings", "gair.pipeline_registry", "gair.datasets")


LAZY_IMPORTS = (("gair", "gair.embed.model"),)
"""Imports inside a module ``__getattr__`` (PEP 562) that the stages never trigger:
``gair.load_model`` imports the model only when asked for (``import gair`` stays light)."""


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    graph = grimp.build_graph("gair", cache_dir=None)
    for importer, imported in LAZY_IMPORTS:
        assert graph.direct_import_exists(importer=importer, imported=imported), (
            f"{importer} no longer imports {imported}: update LAZY_IMPORTS")
        graph.remove_import(importer=importer, imported=imported)
    return graph


def _stages() -> dict[str, dict]:
    return yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"]


def _file_of(module: str) -> Path:
    path = SRC.joinpath(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def code_closure(graph: grimp.ImportGraph, pipeline: str) -> set[str]:
    """Source files (relative to the project) that ``kedro run --pipelines pipeline`` runs."""
    roots = {*KEDRO_ENTRY_POINTS, f"gair.pipelines.{pipeline}"}
    roots |= {m for root in list(roots) for m in graph.find_descendants(root)}
    modules = set(roots)
    for root in roots:
        modules |= graph.find_upstream_modules(root)
    modules = {m for m in modules if m.split(".")[0] == "gair"}
    parents = {".".join(m.split(".")[:k]) for m in modules for k in range(1, m.count(".") + 1)}
    return {_file_of(m).relative_to(PROJECT_ROOT).as_posix() for m in modules | parents}


@pytest.mark.parametrize("stage", list(_stages()))
def test_stage_depends_on_every_module_its_pipeline_imports(graph, stage):
    spec = _stages()[stage]
    assert spec["cmd"] == f"kedro run --pipelines {stage}", "a stage runs its own pipeline"
    deps = [str(d) for d in spec["deps"] if str(d).startswith("src/")]
    missing = sorted(f for f in code_closure(graph, stage)
                     if not any(f == d or f.startswith(d.rstrip("/") + "/") for d in deps))
    assert not missing, f"dvc.yaml stage {stage} lacks code deps: {missing}"


def test_the_check_sees_a_missing_dependency(graph):
    """The closure holds what a stage obviously runs (so a dependency left out is found)."""
    closure = code_closure(graph, "pretrain")
    for module in ("src/gair/pipelines/pretrain/nodes.py", "src/gair/training/system.py",
                   "src/gair/model/nili.py", "src/gair/preprocessing.py", "src/gair/settings.py",
                   "src/gair/__init__.py"):
        assert module in closure
    assert "src/gair/sample_world/world.py" not in closure
