"""The nodes that generate folders build them in the staging area, manifest included, and
the catalog's DirectoryDataset only moves them into place."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from kedro.framework.project import configure_project
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from gair.datasets import DirectoryDataset
from gair.io.directories import MANIFEST_NAME, NotGeneratedError, file_checksums, read_manifest
from gair.io.sentinel2 import read_tile_index
from gair.parameters import EvaluateParams, PairParams, PretrainParams, TrackingParams
from gair.pipelines.evaluate import nodes as evaluate
from gair.pipelines.pair.nodes import extract_training_shards
from gair.pipelines.sample_world import nodes as sample_world
from gair.sample_world import build_world
from tests.conftest import PROJECT_ROOT, small_world_config, temporary_conf
from tests.io.test_shards import _candidates
from tests.training.conftest import tiny_evaluate_params, tiny_pretrain_params


def _staged(folder: Path, staging: Path) -> Path:
    assert folder.parent == staging and folder.name.startswith(".")
    assert read_manifest(folder)["files"] == file_checksums(folder)
    return folder


def test_sample_world_nodes_stage_the_folders_the_datasets_publish(small_world, tmp_path):
    staging = tmp_path / "data" / ".staging"
    world = build_world(small_world_config())  # the small_world fixture's configuration
    for node, name in ((sample_world.write_sentinel2_tiles, "sentinel2"),
                       (sample_world.write_streetscapes, "streetscapes"),
                       (sample_world.write_truth, "truth")):
        folder = _staged(node(world, str(staging)), staging)
        assert not (tmp_path / "data" / name).exists(), "a node writes nothing in place"
        DirectoryDataset(path=str(tmp_path / "data" / name)).save(folder)
        published = tmp_path / "data" / name
        assert (published / MANIFEST_NAME).read_bytes() == (
            small_world[name] / MANIFEST_NAME).read_bytes(), name
        assert file_checksums(published) == file_checksums(small_world[name]), name
    assert list(staging.iterdir()) == []


def _pair_params() -> PairParams:
    pair = yaml.safe_load((PROJECT_ROOT / "conf/base/parameters_pair.yml").read_text())["pair"]
    pair["patch_size_px"] = 32
    pair["shards"] |= {"samples_per_shard": 5, "workers": 1}
    return PairParams(**pair)


def test_pair_node_stages_the_shards_with_their_tables(small_world, tmp_path):
    candidates, tiles = _candidates(small_world)
    staging = tmp_path / ".staging"
    folder = _staged(extract_training_shards(
        candidates, tiles, small_world["sentinel2"], small_world["streetscapes"],
        _pair_params(), str(staging)), staging)
    provenance = read_manifest(folder)["provenance"]
    assert provenance["samples"] + provenance["rejected"] == len(candidates)
    assert {"samples.parquet", "rejects.csv"} <= set(read_manifest(folder)["files"])
    DirectoryDataset(path=str(tmp_path / "shards")).save(folder)
    assert read_manifest(tmp_path / "shards")["provenance"] == provenance


def test_pretrain_baselines_stages_one_checkpoint_per_run(tmp_path, monkeypatch):
    import gair.training.run

    def pretrain(shards_dir, params, tracking):  # a run's checkpoint, without training
        checkpoint = Path(params.run_dir) / "best.ckpt"
        checkpoint.parent.mkdir(parents=True)
        checkpoint.write_text(f"seed {params.seed}")
        return {"best_checkpoint": str(checkpoint), "last_checkpoint": None}

    monkeypatch.setattr(gair.training.run, "pretrain", pretrain)
    params = EvaluateParams(**tiny_evaluate_params(str(tmp_path / "runs")))
    tracking = TrackingParams(mlflow=False, tensorboard=False, local_dir=str(tmp_path / "ml"))
    staging = tmp_path / ".staging"
    folder = _staged(evaluate.pretrain_baselines(
        tmp_path / "shards", PretrainParams(**tiny_pretrain_params()), params, tracking, {},
        str(staging)), staging)
    assert read_manifest(folder)["provenance"] == {"checkpoints": ["gair_s1", "incl_only"]}
    assert (folder / "gair_s1.ckpt").read_text() == "seed 1"
    assert (folder / "incl_only.ckpt").read_text() == "seed 0"


def test_embed_models_stages_every_models_embeddings(small_world, tmp_path, monkeypatch):
    import gair.evaluation.suite

    class Embedded:
        def __init__(self, model):
            self.model = model

        def write(self, directory: Path) -> None:
            directory.mkdir()
            (directory / "pairs.parquet").write_text(self.model)

    monkeypatch.setattr(evaluate, "_load_model", lambda source, device: json.dumps(
        {k: str(v) for k, v in source.items()}))
    monkeypatch.setattr(gair.evaluation.suite, "embed_for_tasks",
                        lambda model, *args: Embedded(model))
    params = EvaluateParams(**tiny_evaluate_params(str(tmp_path / "runs")))
    tiles = read_tile_index(small_world["sentinel2"]).tiles
    staging = tmp_path / ".staging"
    folder = _staged(evaluate.embed_models(
        tmp_path / "gair.ckpt", tmp_path / "baselines", tmp_path / "shards", None, None, tiles,
        small_world["sentinel2"], PretrainParams(**tiny_pretrain_params()), params,
        _pair_params(), str(staging)), staging)
    models = ["gair_s0", "gair_s1", "incl_only", "random_s0", "random_s1"]
    assert read_manifest(folder)["provenance"] == {"models": models}
    assert sorted(json.loads((folder / evaluate.MODELS_MANIFEST).read_text())) == models
    assert json.loads((folder / "gair_s1" / "pairs.parquet").read_text()) == {
        "checkpoint": str(tmp_path / "baselines" / "gair_s1.ckpt")}
    DirectoryDataset(path=str(tmp_path / "embeddings")).save(folder)
    assert sorted(read_manifest(tmp_path / "embeddings")["files"]) == sorted(
        [*(f"{m}/pairs.parquet" for m in models), "models.json"])


def test_a_run_that_would_replace_real_data_is_refused_before_any_node(tmp_path):
    conf = temporary_conf(tmp_path)
    real = tmp_path / "data" / "01_raw" / "sample" / "streetscapes"
    real.mkdir(parents=True)
    (real / "metadata_common_attributes.csv").write_text("uuid\n")
    bootstrap_project(PROJECT_ROOT)
    configure_project("gair")
    with (KedroSession.create(project_path=PROJECT_ROOT, conf_source=str(conf)) as session,
          pytest.raises(NotGeneratedError, match="did not generate")):
        session.run(pipeline_names=["sample_world"])
    assert not (tmp_path / "data" / ".staging").exists(), "no node ran"
    assert [p.name for p in real.iterdir()] == ["metadata_common_attributes.csv"]
