"""Sweeps: a study completes, prunes, survives divergence and restarts, shares workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import optuna
import pytest
import yaml
from kedro.config import OmegaConfigLoader

from gair.parameters import PretrainParams, SweepParams
from gair.sweep import best_pretrain_parameters, open_study, run_study
from tests.conftest import PROJECT_ROOT, temporary_conf
from tests.training.conftest import tiny_pretrain_params

SPACE = {
    "loss.temperature": {"type": "float", "low": 0.05, "high": 0.2, "log": True},
    "optimizer.blr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
    "loss.learnable_temperature": {"type": "categorical", "choices": [False, True]},
}


def _settings(storage_dir, **overrides):
    values = {"study_name": f"test-{uuid.uuid4().hex[:8]}", "storage": "journal",
              "storage_dir": str(storage_dir), "n_trials": 2, "total_trials": 2,
              "pruner": {"type": "none"}, "search_space": SPACE,
              "budget": {"trainer.max_epochs": 1, "trainer.limit_train_batches": 2,
                         "trainer.enable_progress_bar": False}}
    return SweepParams(**(values | overrides)).settings()


def _base(tmp_path) -> dict:
    params = tiny_pretrain_params() | {"run_dir": str(tmp_path / "unused")}
    return PretrainParams(**params).model_dump(mode="json")


@pytest.mark.slow
def test_small_sweep_completes_and_its_best_params_load_into_pretrain(tiny_shards, tmp_path):
    settings = _settings(tmp_path / "sweep")
    study = run_study(settings, _base(tmp_path), tiny_shards)
    states = [t.state for t in study.trials]
    assert states == [optuna.trial.TrialState.COMPLETE] * 2
    assert all(t.user_attrs["steps"] == 2 for t in study.trials)
    best = best_pretrain_parameters(study, _base(tmp_path))
    assert best["pretrain"]["loss"]["temperature"] == study.best_params["loss.temperature"]
    assert best["pretrain"]["trainer"]["max_epochs"] == 2, "the full budget, not the sweep's"
    # Through the documented environment: conf/sweep/parameters_pretrain.yml.
    conf = temporary_conf(tmp_path)
    (conf / "sweep" / "parameters_pretrain.yml").write_text(yaml.safe_dump(best))
    loaded = OmegaConfigLoader(conf_source=str(conf), base_env="base", default_run_env="sweep",
                               merge_strategy={"parameters": "soft"})["parameters"]["pretrain"]
    assert PretrainParams(**loaded).loss.temperature == study.best_params["loss.temperature"]
    assert not list((tmp_path / "sweep" / "trials").glob("*/checkpoints/*.ckpt"))


@pytest.mark.slow
def test_pruning_prunes_and_spends_fewer_steps(tiny_shards, tmp_path):
    settings = _settings(tmp_path / "sweep", pruner={"type": "threshold", "lower": 1.1},
                         budget={"trainer.max_epochs": 3, "trainer.limit_train_batches": 2,
                                 "trainer.enable_progress_bar": False}, n_trials=1,
                         total_trials=1)
    study = run_study(settings, _base(tmp_path), tiny_shards)
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.PRUNED
    full_budget = 3 * 2  # epochs x batches
    assert trial.user_attrs["reason"] == "pruned"
    assert trial.user_attrs["steps"] == 2 < full_budget, "pruned after its first epoch"


@pytest.mark.slow
def test_a_diverging_trial_is_recorded_and_the_study_goes_on(tiny_shards, tmp_path):
    settings = _settings(tmp_path / "sweep")
    study = open_study(settings)
    study.enqueue_trial({"optimizer.blr": 1e30, "loss.temperature": 0.1,
                         "loss.learnable_temperature": False}, skip_if_exists=False)
    study.enqueue_trial({"optimizer.blr": 1e-3, "loss.temperature": 0.1,
                         "loss.learnable_temperature": False})
    # The enqueued values lie outside the search space on purpose: widen it for the test.
    space = SPACE | {"optimizer.blr": {"type": "float", "low": 1e-4, "high": 1e31, "log": True}}
    settings.search_space = space
    study = run_study(settings, _base(tmp_path), tiny_shards)
    first, second = study.trials
    assert first.state == optuna.trial.TrialState.PRUNED
    assert first.user_attrs["reason"].startswith("diverged: training loss became")
    assert second.state == optuna.trial.TrialState.COMPLETE


@pytest.mark.slow
def test_an_interrupted_sweep_continues_the_same_study(tiny_shards, tmp_path):
    first = run_study(_settings(tmp_path / "s", study_name="resumable", n_trials=1),
                      _base(tmp_path), tiny_shards)
    assert len(first.trials) == 1
    again = run_study(_settings(tmp_path / "s", study_name="resumable", n_trials=5),
                      _base(tmp_path), tiny_shards)
    assert [t.number for t in again.trials] == [0, 1], "one more trial: the budget is 2"
    assert len({json.dumps(t.params, sort_keys=True) for t in again.trials}) == 2


WORKER = """
import json, sys
from gair.parameters import SweepParams
from gair.sweep import run_study
spec = json.loads(sys.argv[1])
run_study(SweepParams(**spec["sweep"]).settings(), spec["base"], spec["shards"])
"""


def _two_workers(tiny_shards, tmp_path, storage: str, k: int = 2) -> optuna.Study:
    name = f"two-workers-{uuid.uuid4().hex[:8]}"
    sweep = {"study_name": name, "storage": storage, "storage_dir": str(tmp_path / "sweep"),
             "n_trials": k, "total_trials": 2 * k, "pruner": {"type": "none"},
             "search_space": SPACE,
             "budget": {"trainer.max_epochs": 1, "trainer.limit_train_batches": 1,
                        "trainer.enable_progress_bar": False}}
    spec = json.dumps({"sweep": sweep, "base": _base(tmp_path), "shards": str(tiny_shards)})
    env = os.environ | {"PYTHONPATH": str(PROJECT_ROOT)}
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, spec],
                                env=env | {"GAIR_SWEEP_WORKER": str(i)},
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
               for i in range(2)]
    for worker in workers:
        _, err = worker.communicate(timeout=600)
        assert worker.returncode == 0, err[-2000:]
    return open_study(SweepParams(**sweep).settings())


def _assert_one_study(study: optuna.Study, k: int = 2) -> None:
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 2 * k
    assert sorted(t.number for t in trials) == list(range(2 * k)), "each trial once"
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert len({t._trial_id for t in trials}) == 2 * k
    assert len({json.dumps(t.params, sort_keys=True) for t in trials}) == 2 * k


@pytest.mark.slow
def test_two_worker_processes_share_one_journal_study(tiny_shards, tmp_path):
    _assert_one_study(_two_workers(tiny_shards, tmp_path, "journal"))


@pytest.mark.slow
def test_two_worker_processes_share_one_postgresql_study(tiny_shards, tmp_path):
    url = os.environ.get("GAIR_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("no PostgreSQL server: .ci/run starts one and sets GAIR_TEST_POSTGRES_URL")
    _assert_one_study(_two_workers(tiny_shards, tmp_path, url))


@pytest.mark.parametrize(
    ("config", "kind"),
    [({"type": "median"}, optuna.pruners.MedianPruner),
     ({"type": "percentile", "percentile": 25.0}, optuna.pruners.PercentilePruner),
     ({"type": "successive_halving"}, optuna.pruners.SuccessiveHalvingPruner),
     ({"type": "hyperband"}, optuna.pruners.HyperbandPruner),
     ({"type": "none"}, optuna.pruners.NopPruner)],
)
def test_pruners_from_configuration(config, kind):
    from gair.sweep.study import make_pruner

    assert isinstance(make_pruner(config), kind)
    with pytest.raises(ValueError, match="unknown pruner"):
        make_pruner({"type": "sometimes"})


def test_an_invalid_search_space_stops_before_the_first_trial(tmp_path):
    from gair.sweep.study import make_objective

    settings = _settings(tmp_path, search_space={"loss.temprature": {"type": "float", "low": 0.1,
                                                                    "high": 0.2}})
    with pytest.raises(ValueError, match="temprature"):
        make_objective(settings, _base(tmp_path), tmp_path)


SLEEPER = """
import json, sys, time
from gair.parameters import SweepParams
from gair.sweep import run_study
spec = json.loads(sys.argv[1])

def objective(trial):
    trial.suggest_float("loss.temperature", 0.05, 0.2)
    print("started", flush=True)
    time.sleep(600)  # killed long before this ends
    return 0.0

run_study(SweepParams(**spec).settings(), {}, ".", objective=objective)
"""


@pytest.mark.slow
def test_a_killed_workers_trial_is_failed_and_retried_on_a_database(tmp_path):
    url = os.environ.get("GAIR_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("no PostgreSQL server: .ci/run starts one and sets GAIR_TEST_POSTGRES_URL")
    spec = {"study_name": f"heartbeat-{uuid.uuid4().hex[:8]}", "storage": url,
            "storage_dir": str(tmp_path), "n_trials": 1, "total_trials": 2,
            "pruner": {"type": "none"}, "heartbeat_interval": 1, "grace_period": 2,
            "search_space": {"loss.temperature": {"type": "float", "low": 0.05, "high": 0.2}}}
    worker = subprocess.Popen([sys.executable, "-c", SLEEPER, json.dumps(spec)],
                              env=os.environ | {"PYTHONPATH": str(PROJECT_ROOT)},
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert worker.stdout.readline().strip() == "started"
    worker.kill()  # the trial stays RUNNING in the database, its heartbeat stops
    worker.wait()
    import time

    time.sleep(3)  # past the grace period
    settings = SweepParams(**spec).settings()
    study = run_study(settings, {}, tmp_path, objective=lambda t: t.suggest_float(
        "loss.temperature", 0.05, 0.2))
    killed, retried = study.trials[:2]
    assert killed.state == optuna.trial.TrialState.FAIL
    assert retried.state == optuna.trial.TrialState.COMPLETE
    assert retried.params == killed.params, "the retry runs the killed trial's values again"
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    assert RetryHeartbeatStaleTrialCallback.retried_trial_number(retried) == killed.number
