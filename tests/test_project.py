"""The Kedro project: installs, registers its pipelines, runs, and keeps quiet."""

from __future__ import annotations

import configparser
import importlib.metadata
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kedro.config import OmegaConfigLoader
from kedro.framework.project import configure_project, pipelines
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from packaging.version import Version

import gair
from gair.io.directories import read_manifest
from tests.conftest import PROJECT_ROOT, small_world_config, temporary_conf

LAYERS = {"raw", "intermediate", "primary", "feature", "model_input", "models",
          "model_output", "reporting"}


@pytest.fixture(scope="module")
def project():
    bootstrap_project(PROJECT_ROOT)
    configure_project("gair")
    return PROJECT_ROOT


def test_package_is_installed_from_this_checkout_at_its_version():
    # The version is read from gair.__version__ at install time: an install from another
    # checkout or an older version of it shows here.
    assert importlib.metadata.version("gair") == gair.__version__
    assert str(Version(gair.__version__)) == gair.__version__  # PEP 440, normalised
    assert Path(gair.__file__).resolve().is_relative_to(PROJECT_ROOT / "src")


def test_pipelines_are_registered_and_default_chains_them(project):
    from gair.pipeline_registry import ON_REQUEST

    assert {"sample_world", "ingest", "pair", "pretrain", "sweep"} <= set(pipelines)
    default = {node.name for node in pipelines["__default__"].nodes}
    for name, pipeline in pipelines.items():
        own = {node.name for node in pipeline.nodes} - default
        # On request: nodes of its own outside the default chain (acquire starts with
        # ingest's street-view node, shared); every other pipeline is in the chain.
        assert bool(own) == (name in ON_REQUEST), name
    assert pipelines["__default__"].nodes[0].name == "build_sample_world_node"


def test_every_persisted_catalog_entry_has_a_viz_layer(project):
    loader = OmegaConfigLoader(conf_source=str(project / "conf"), base_env="base",
                               default_run_env="local")
    catalog = loader["catalog"]
    assert catalog
    for name, entry in catalog.items():
        if entry["type"] == "MemoryDataset":
            continue
        assert entry.get("metadata", {}).get("kedro-viz", {}).get("layer") in LAYERS, name


def test_a_misspelt_parameter_is_refused_by_name(project):
    from pydantic import ValidationError

    from gair.parameters import PairParams

    loader = OmegaConfigLoader(conf_source=str(project / "conf"), base_env="base",
                               default_run_env="local")
    pair = dict(loader["parameters"]["pair"]) | {"patch_size": 64}  # for patch_size_px
    with pytest.raises(ValidationError, match="patch_size"):
        PairParams(**pair)


def test_telemetry_and_analytics_are_off_in_committed_config(project):
    from kedro_telemetry.plugin import _check_for_telemetry_consent

    assert _check_for_telemetry_consent(project) is False
    dvc_config = configparser.ConfigParser()
    dvc_config.read(project / ".dvc" / "config")
    assert dvc_config["core"]["analytics"] == "false"
    tracked = subprocess.run(["git", "ls-files", ".telemetry", ".dvc/config"], cwd=project,
                             capture_output=True, text=True, check=False).stdout.split()
    if (project / ".git").exists():
        assert sorted(tracked) == [".dvc/config", ".telemetry"]


def test_dvc_stage_runs_the_sample_world_pipeline(project):
    stages = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    assert set(stages) >= {"sample_world", "ingest", "pair", "pretrain"}
    assert "sweep" not in stages, "the sweep runs on request, not in `dvc repro`"
    produced = {"data/01_raw/sample/streetscapes", "data/01_raw/sample/sentinel2"}
    for name, stage in stages.items():
        assert stage["cmd"] == f"kedro run --pipelines {name}"
        assert name in pipelines
        for dep in stage["deps"]:
            assert dep.startswith("data/") or (project / dep).exists(), dep
            if dep.startswith("data/"):
                assert dep in produced, f"{name} depends on {dep}, which no earlier stage writes"
        outputs = stage["outs"] + stage.get("metrics", [])
        produced |= {next(iter(o)) if isinstance(o, dict) else o for o in outputs}


@pytest.mark.slow
def test_kedro_run_writes_the_sample_world(project, tmp_path):
    """A real Kedro session on a copy of conf/ whose globals point at a temporary folder."""
    conf = temporary_conf(tmp_path, {"parameters_sample_world": {
        "sample_world": small_world_config(tile_size_px=64).model_dump(mode="json")}})

    with KedroSession.create(project_path=project, conf_source=str(conf)) as session:
        session.run(pipeline_names=["sample_world"])

    for name in ("streetscapes", "sentinel2", "truth"):
        folder = tmp_path / "data" / "01_raw" / "sample" / name
        assert read_manifest(folder)["provenance"]["config"]["tile_size_px"] == 64
    assert len(list((tmp_path / "data" / "01_raw" / "sample" / "sentinel2").glob("*.tif"))) == 3


def test_kedro_cli_lists_the_pipelines(project):
    result = subprocess.run(
        [sys.executable, "-m", "kedro", "registry", "list"], cwd=project,
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "sample_world" in result.stdout and "__default__" in result.stdout


@pytest.mark.parametrize("env", ["local", "gpu"])
def test_every_environment_parameters_validate(project, env):
    from gair.parameters import IngestParams, PairParams, PretrainParams, TrackingParams
    from gair.sample_world import SampleWorldConfig

    loader = OmegaConfigLoader(conf_source=str(project / "conf"), base_env="base",
                               default_run_env=env)
    parameters = loader["parameters"]
    SampleWorldConfig(**parameters["sample_world"])
    TrackingParams(**parameters["tracking"])
    IngestParams(**parameters["ingest"])
    PairParams(**parameters["pair"])
    pretrain = PretrainParams(**parameters["pretrain"])
    assert pretrain.needs_launcher() == (env == "gpu")


def test_an_environment_moving_data_dir_restates_the_derived_paths(project, tmp_path):
    """As conf/base/globals.yml says: each environment's globals resolve on their own, so
    the derived paths stay under data/ unless the environment restates them."""
    conf = tmp_path / "conf"
    shutil.copytree(project / "conf", conf)
    (conf / "moved").mkdir()
    (conf / "moved" / "globals.yml").write_text("data_dir: /srv/gair\n")
    catalog = OmegaConfigLoader(str(conf), base_env="base", default_run_env="moved")["catalog"]
    assert catalog["street_views"]["filepath"].startswith("/srv/gair/")
    assert catalog["sentinel2_raw"]["path"] == "data/01_raw/sample/sentinel2"
    (conf / "moved" / "globals.yml").write_text(
        "data_dir: /srv/gair\nsample_world_dir: /srv/gair/01_raw/sample\n"
        "streetscapes_dir: /srv/gair/01_raw/sample/streetscapes\n"
        "sentinel2_dir: /srv/gair/01_raw/sample/sentinel2\n")
    catalog = OmegaConfigLoader(str(conf), base_env="base", default_run_env="moved")["catalog"]
    assert catalog["sentinel2_raw"]["path"] == "/srv/gair/01_raw/sample/sentinel2"
    assert catalog["sample_world_truth"]["path"] == "/srv/gair/01_raw/sample/truth"
