"""DVC on a shrunken configuration, in a throwaway clone: repro, no-op, partial rerun, exps."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import PROJECT_ROOT, small_world_config
from tests.training.conftest import tiny_evaluate_params, tiny_pretrain_params

BIN = Path(sys.executable).parent


def _run(cwd: Path, *args: str) -> str:
    env = os.environ | {"PATH": f"{BIN}:{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1",
                        "KEDRO_DISABLE_TELEMETRY": "1", "GIT_AUTHOR_NAME": "t",
                        "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t"}
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{' '.join(args)}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


def _stages_run(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")}


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A clone of the committed project with a shrunken configuration, committed."""
    if shutil.which("git") is None or not (PROJECT_ROOT / ".git").exists():
        pytest.skip("needs the project's git repository")
    root = tmp_path_factory.mktemp("dvc") / "gair"
    _run(PROJECT_ROOT, "git", "clone", "-q", str(PROJECT_ROOT), str(root))
    conf = root / "conf" / "base"
    (conf / "parameters_sample_world.yml").write_text(yaml.safe_dump(
        {"sample_world": small_world_config(tile_size_px=64, street_views_per_tile=16)
         .model_dump(mode="json")}))
    pair = yaml.safe_load((conf / "parameters_pair.yml").read_text())
    pair["pair"]["patch_size_px"] = 32
    pair["pair"]["split"]["block_km"] = 0.3  # seed 0: all three splits
    (conf / "parameters_pair.yml").write_text(yaml.safe_dump(pair))
    pretrain = tiny_pretrain_params(max_epochs=1) | {"run_dir": "data/06_models/pretrain_run"}
    (conf / "parameters_pretrain.yml").write_text(yaml.safe_dump({"pretrain": pretrain}))
    evaluate = tiny_evaluate_params("data/06_models/evaluate_runs")
    (conf / "parameters_evaluate.yml").write_text(yaml.safe_dump({"evaluate": evaluate}))
    _run(root, "git", "commit", "-qam", "shrink")
    return root


@pytest.mark.slow
def test_repro_then_nothing_then_only_what_a_parameter_touches(repo):
    first = _run(repo, "dvc", "repro")
    assert _stages_run(first) == {"sample_world", "ingest", "pair", "pretrain", "evaluate"}
    metrics = json.loads((repo / "data/08_reporting/pretrain_metrics.json").read_text())
    assert "pretrain/val/r@1" in metrics, "the shrunken world still has a val split"
    assert "up to date" in _run(repo, "dvc", "status")
    assert _stages_run(_run(repo, "dvc", "repro")) == set(), "a second repro does nothing"

    params = repo / "conf/base/parameters_pretrain.yml"
    values = yaml.safe_load(params.read_text())
    values["pretrain"]["loss"]["temperature"] = 0.1
    params.write_text(yaml.safe_dump(values))
    assert _stages_run(_run(repo, "dvc", "repro")) == {"pretrain", "evaluate"}

    # Forced again from scratch, the CPU run reproduces its metrics exactly.
    reports = repo / "data/08_reporting"
    again = {name: json.loads((reports / name).read_text())
             for name in ("pretrain_metrics.json", "metrics.json")}
    assert any(k.startswith("eval/") for k in again["metrics.json"])
    _run(repo, "dvc", "repro", "--force", "--single-item", "pretrain")
    _run(repo, "dvc", "repro", "--force", "--single-item", "evaluate")
    assert {name: json.loads((reports / name).read_text()) for name in again} == again
    _run(repo, "git", "checkout", "--", "conf/base/parameters_pretrain.yml")


@pytest.mark.slow
def test_experiments_run_and_show(repo):
    _run(repo, "dvc", "repro")
    _run(repo, "git", "add", "-A")
    _run(repo, "git", "commit", "-qm", "lock", "--allow-empty")
    output = _run(repo, "dvc", "exp", "run", "-n", "small-queue",
                  "-S", "conf/base/parameters_pretrain.yml:pretrain.loss.queue_size=4")
    assert _stages_run(output) == {"pretrain", "evaluate"}
    shown = _run(repo, "dvc", "exp", "show", "--no-pager", "--csv")
    assert "small-queue" in shown


@pytest.mark.slow
def test_push_and_pull_through_a_local_remote(repo, tmp_path):
    _run(repo, "dvc", "repro")
    _run(repo, "dvc", "remote", "add", "-f", "-d", "test", str(tmp_path / "remote"))
    _run(repo, "dvc", "push")
    shutil.rmtree(repo / ".dvc" / "cache")
    shutil.rmtree(repo / "data/05_model_input/shards")
    _run(repo, "dvc", "pull")
    assert (repo / "data/05_model_input/shards/samples.parquet").is_file()
    assert "up to date" in _run(repo, "dvc", "status")
