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
from gair.sweep import SweepSettings, best_pretrain_parameters, open_study, run_study
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
    return SweepSettings.from_params(SweepParams(**(values | overrides)))


def _base(tmp_path) -> PretrainParams:
    return PretrainParams(**tiny_pretrain_params() | {"run_dir": str(tmp_path / "unused")})


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
    settings = settings.model_copy(update={"search_space": SweepParams(
        **settings.model_dump() | {"search_space": space}).search_space})
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
from gair.parameters import PretrainParams, SweepParams
from gair.sweep import SweepSettings, run_study
spec = json.loads(sys.argv[1])
run_study(SweepSettings.from_params(SweepParams(**spec["sweep"])),
          PretrainParams(**spec["base"]), spec["shards"])
"""


def _two_workers(tiny_shards, tmp_path, storage: str, k: int = 2) -> optuna.Study:
    name = f"two-workers-{uuid.uuid4().hex[:8]}"
    sweep = {"study_name": name, "storage": storage, "storage_dir": str(tmp_path / "sweep"),
             "n_trials": k, "total_trials": 2 * k, "pruner": {"type": "none"},
             "search_space": SPACE,
             "budget": {"trainer.max_epochs": 1, "trainer.limit_train_batches": 1,
                        "trainer.enable_progress_bar": False}}
    spec = json.dumps({"sweep": sweep, "base": _base(tmp_path).model_dump(mode="json"),
                       "shards": str(tiny_shards)})
    env = os.environ | {"PYTHONPATH": str(PROJECT_ROOT)}
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, spec],
                                env=env | {"GAIR_SWEEP_WORKER": str(i)},
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
               for i in range(2)]
    for worker in workers:
        _, err = worker.communicate(timeout=600)
        assert worker.returncode == 0, err[-2000:]
    return open_study(SweepSettings.from_params(SweepParams(**sweep)))


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
    if not os.environ.get("GAIR_TEST_POSTGRES_URL"):
        pytest.skip("no PostgreSQL server: .ci/run starts one and sets GAIR_TEST_POSTGRES_URL")
    # The URL holds a password, so parameters name the variable (the workers inherit it).
    _assert_one_study(_two_workers(tiny_shards, tmp_path, "env:GAIR_TEST_POSTGRES_URL"))


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
from gair.parameters import PretrainParams, SweepParams
from gair.sweep import SweepSettings, run_study
spec = json.loads(sys.argv[1])

def objective(trial):
    trial.suggest_float("loss.temperature", 0.05, 0.2)
    print("started", flush=True)
    time.sleep(600)  # killed long before this ends
    return 0.0

run_study(SweepSettings.from_params(SweepParams(**spec)), PretrainParams(), ".",
          objective=objective)
"""


@pytest.mark.slow
def test_a_killed_workers_trial_is_failed_and_retried_on_a_database(tmp_path):
    if not os.environ.get("GAIR_TEST_POSTGRES_URL"):
        pytest.skip("no PostgreSQL server: .ci/run starts one and sets GAIR_TEST_POSTGRES_URL")
    spec = {"study_name": f"heartbeat-{uuid.uuid4().hex[:8]}",
            "storage": "env:GAIR_TEST_POSTGRES_URL",
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
    settings = SweepSettings.from_params(SweepParams(**spec))
    study = run_study(settings, PretrainParams(), tmp_path, objective=lambda t: t.suggest_float(
        "loss.temperature", 0.05, 0.2))
    killed, retried = study.trials[:2]
    assert killed.state == optuna.trial.TrialState.FAIL
    assert retried.state == optuna.trial.TrialState.COMPLETE
    assert retried.params == killed.params, "the retry runs the killed trial's values again"
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    assert RetryHeartbeatStaleTrialCallback.retried_trial_number(retried) == killed.number


# ---- a database password never is a parameter, and is masked wherever it is shown ------

SECRET = "hunter2-Xq9"


@pytest.mark.parametrize(("url", "shown"), [
    (f"postgresql+psycopg2://gair:{SECRET}@db-host:5432/gair",
     "postgresql+psycopg2://gair:***@db-host:5432/gair"),
    ("postgresql://gair:p@ss@db-host/gair", "postgresql://gair:***@db-host/gair"),
    ("postgresql://gair:se%40cret@db-host/gair", "postgresql://gair:***@db-host/gair"),
    ("postgresql://gair@db-host/gair?sslmode=require&password=x",
     "postgresql://gair@db-host/gair?sslmode=require&password=***"),
    ("postgresql+psycopg2://gair@db-host:5432/gair", None),
    ("postgresql://db-host:5432/gair", None),
    ("sqlite:////tmp/optuna.db", None),
    ("env:GAIR_OPTUNA_STORAGE", None),
    ("credentials:sweep_storage", None),
    ("journal", None),
])
def test_redact_url_masks_the_password_and_nothing_else(url, shown):
    from gair.secrets import redact_url

    assert redact_url(url) == (shown or url)


def test_a_password_in_parameters_is_refused_with_where_to_put_it(tmp_path):
    with pytest.raises(ValueError, match=r"credentials\.yml") as caught:
        _settings(tmp_path, storage=f"postgresql+psycopg2://gair:{SECRET}@db-host/gair")
    assert "env:GAIR_OPTUNA_STORAGE" in str(caught.value)
    assert "gair:***@db-host" in str(caught.value)
    assert SECRET not in str(caught.value), "the refusal does not echo the password"
    _settings(tmp_path, storage="postgresql+psycopg2://gair@db-host/gair")  # ~/.pgpass: fine


def test_kedro_refuses_a_password_in_parameters_before_anything_runs(tmp_path):
    from kedro.framework.project import configure_project
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project
    from kedro.validation.exceptions import ParameterValidationError

    conf = temporary_conf(tmp_path)
    (conf / "local" / "parameters_sweep.yml").write_text(yaml.safe_dump(
        {"sweep": {"storage": f"postgresql+psycopg2://gair:{SECRET}@db-host/gair"}}))
    bootstrap_project(PROJECT_ROOT)
    configure_project("gair")
    with (KedroSession.create(project_path=PROJECT_ROOT, conf_source=str(conf)) as session,
          pytest.raises(ParameterValidationError, match="credentials:sweep_storage") as caught):
        session.load_context().params  # noqa: B018
    assert SECRET not in str(caught.value)


def test_the_hook_hands_the_sweep_the_credentials_entry_its_storage_names(tmp_path):
    from kedro.framework.project import configure_project
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    from gair.hooks import SWEEP_STORAGE_CREDENTIALS

    entry = {"url": f"postgresql+psycopg2://gair:{SECRET}@db-host/gair"}
    conf = temporary_conf(tmp_path)
    (conf / "local" / "credentials.yml").write_text(yaml.safe_dump(
        {"sweep_storage": entry, "unrelated": {"key": "not for the sweep"}}))
    bootstrap_project(PROJECT_ROOT)
    configure_project("gair")

    def handed_over(storage: str) -> dict:
        (conf / "local" / "parameters_sweep.yml").write_text(
            yaml.safe_dump({"sweep": {"storage": storage}}))
        with KedroSession.create(project_path=PROJECT_ROOT, conf_source=str(conf)) as session:
            return session.load_context().catalog.load(SWEEP_STORAGE_CREDENTIALS)

    assert handed_over("credentials:sweep_storage") == {"sweep_storage": entry}
    assert handed_over("journal") == {}, "no credentials where the storage names none"


def test_the_storage_url_comes_from_credentials_or_the_environment(tmp_path, monkeypatch):
    from gair.sweep.study import resolve_storage

    url = f"sqlite:///{tmp_path / 'shared.db'}"
    from_credentials = SweepSettings.from_params(
        SweepParams(study_name="c", storage="credentials:sweep_storage",
                    storage_dir=str(tmp_path), search_space=SPACE),
        {"sweep_storage": {"url": url}})
    assert resolve_storage(from_credentials) == url
    secret = from_credentials.model_copy(
        update={"credentials": {"sweep_storage": {"url": f"postgresql://u:{SECRET}@h"}}})
    assert SECRET not in repr(secret) and SECRET not in str(secret.model_dump())
    open_study(from_credentials)
    monkeypatch.setenv("GAIR_TEST_SWEEP_URL", url)
    from_environment = _settings(tmp_path, study_name="c", storage="env:GAIR_TEST_SWEEP_URL")
    assert open_study(from_environment).study_name == "c", "the same study, another route"
    with pytest.raises(ValueError, match=r"add `sweep_storage: \{url: \.\.\.\}` to conf/local"):
        resolve_storage(_settings(tmp_path, storage="credentials:sweep_storage"))


def test_an_error_that_shows_the_password_is_raised_masked():
    import traceback

    from gair.secrets import passwords_masked_in_errors

    url = f"postgresql+psycopg2://gair:{SECRET}@db-host/gair"
    with pytest.raises(RuntimeError) as caught, passwords_masked_in_errors(url):
        try:
            raise OSError(f"cannot reach {url}")
        except OSError as error:
            raise ValueError("storage failed") from error
    shown = "".join(traceback.format_exception(caught.value))
    assert "ValueError: storage failed <- OSError: cannot reach " in shown
    assert "gair:***@db-host" in shown and SECRET not in shown
    with pytest.raises(KeyError), passwords_masked_in_errors(url):  # nothing to mask: as is
        raise KeyError("trials")


@pytest.mark.slow
def test_kedro_runs_the_sweep_on_the_database_its_credentials_name(tiny_shards, tmp_path):
    import shutil

    from kedro.framework.project import configure_project
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    url = f"sqlite:///{tmp_path / 'shared.db'}"  # a database URL, as a shared one would be
    conf = temporary_conf(tmp_path, {
        "parameters_pretrain": {"pretrain": tiny_pretrain_params()
                                | {"run_dir": str(tmp_path / "unused")}},
        "parameters_sweep": {"sweep": {
            "study_name": "from-credentials", "storage": "credentials:sweep_storage",
            "storage_dir": str(tmp_path / "sweep"), "n_trials": 1, "total_trials": 1,
            "pruner": {"type": "none"}, "search_space": SPACE,
            "budget": {"trainer.max_epochs": 1, "trainer.limit_train_batches": 1,
                       "trainer.enable_progress_bar": False}}},
    })
    (conf / "local" / "credentials.yml").write_text(
        yaml.safe_dump({"sweep_storage": {"url": url}}))
    shutil.copytree(tiny_shards, tmp_path / "data" / "05_model_input" / "shards")
    bootstrap_project(PROJECT_ROOT)
    configure_project("gair")
    with KedroSession.create(project_path=PROJECT_ROOT, conf_source=str(conf)) as session:
        session.run(pipeline_names=["sweep"])
    study = optuna.load_study(study_name="from-credentials", storage=url)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE]
