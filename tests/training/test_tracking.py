"""Experiment tracking: MLflow runs read back from the store, TensorBoard event files beside
the CSV logs, sweep trials as nested runs, evaluation metrics, and passwords kept out."""

from __future__ import annotations

import json
import logging
import os
import uuid
from pathlib import Path

import optuna
import pytest
from lightning.pytorch.callbacks import Callback

from gair.parameters import PretrainParams, SweepParams, TrackingParams
from gair.tracking import Tracking, log_run, metric_key, resolve, tracking_loggers
from gair.training import run_pretraining
from gair.training.run import read_history
from tests.training.conftest import tiny_pretrain_params

SECRET = "s3cr3t-tracking-pw"


def _spec(shards, run_dir, **trainer) -> dict:
    params = PretrainParams(**tiny_pretrain_params(**trainer), run_dir=str(run_dir))
    return {"shards_dir": str(shards), "run_dir": str(run_dir),
            "params": params.model_dump(mode="json")}


def _client(tracking: Tracking):
    from mlflow import MlflowClient

    return MlflowClient(tracking.tracking_uri)


def _runs(tracking: Tracking, **tags) -> list:
    client = _client(tracking)
    experiment = client.get_experiment_by_name(tracking.experiment)
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    return [r for r in runs if all(r.data.tags.get(k) == v for k, v in tags.items())]


def _steps(tracking: Tracking, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in _client(tracking).get_metric_history(run_id, key))


class _Crash(Callback):
    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            raise RuntimeError("killed")


@pytest.mark.slow
def test_pretraining_logs_to_mlflow_and_tensorboard_and_a_resumed_run_continues(
        tiny_shards, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tracking = resolve(TrackingParams(local_dir=str(tmp_path / "mlruns"), experiment="t")
                       ).for_run("pretrain/run", {"gair.pipeline": "pretrain"})
    assert tracking.tracking_uri == f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    run_dir = tmp_path / "run"
    spec = _spec(tiny_shards, run_dir)
    with pytest.raises(RuntimeError, match="killed"):
        run_pretraining(spec, callbacks=[_Crash()], tracking=tracking)
    (interrupted,) = _runs(tracking)
    assert interrupted.info.status == "FAILED"
    summary = run_pretraining(spec, tracking=tracking)

    (run,) = _runs(tracking)  # the resumed launch continued the interrupted run
    assert run.info.run_id == interrupted.info.run_id and run.info.status == "FINISHED"
    assert run.info.run_name == "pretrain/run"
    assert run.data.tags["gair.pipeline"] == "pretrain"
    assert run.data.tags["gair.seed"] == "0"
    assert run.data.tags["gair.run_dir"] == str(run_dir.absolute())
    assert len(run.data.tags["gair.config_hash"]) == 12
    params = run.data.params
    assert params["trainer.max_epochs"] == "2" and params["loss.queue_size"] == "8"
    assert params["model.rs_encoder.name"] == "vit_tiny_patch16_224"
    # The CSV logs are where they were, and MLflow holds the same steps of both launches.
    history = read_history(run_dir)
    train_steps = sorted(history.dropna(subset=["train/loss"])["step"].astype(int))
    assert len(train_steps) == summary["global_step"] == 8
    assert _steps(tracking, run.info.run_id, "train/loss") == train_steps
    assert run.data.metrics["train/loss"] == pytest.approx(
        history["train/loss"].dropna().iloc[-1], rel=1e-6)
    assert run.data.metrics["val/r_at_1"] == pytest.approx(summary["metrics"]["val/r@1"])
    # TensorBoard: one version per launch, outside the run folder (a DVC output).
    versions = sorted((tmp_path / "mlruns" / "tensorboard" / "pretrain" / "run").iterdir())
    assert [v.name for v in versions] == ["version_0", "version_1"]
    scalars = []
    for version in versions:
        assert list(version.glob("events.out.tfevents.*"))
        events = EventAccumulator(str(version))
        events.Reload()
        scalars += [(e.step, e.value) for e in events.Scalars("train/loss")]
    assert [s for s, _ in sorted(scalars)] == train_steps
    assert {p.name for p in run_dir.iterdir()} == {"checkpoints", "logs", "spec.json",
                                                  "summary.json"}
    assert "MLFLOW_TRACKING_URI" not in os.environ, "no process-wide URI for later runs"


def test_a_sweep_trial_is_a_run_under_the_study_with_its_values_and_objective(tmp_path):
    from gair.sweep import SweepSettings, run_study

    tracking = resolve(TrackingParams(local_dir=str(tmp_path / "mlruns")))
    settings = SweepSettings.from_params(SweepParams(
        study_name=f"t-{uuid.uuid4().hex[:6]}", storage_dir=str(tmp_path / "sweep"),
        n_trials=3, total_trials=3, pruner={"type": "none"},
        search_space={"loss.temperature": {"type": "float", "low": 0.05, "high": 0.2}},
    ))

    def objective(trial):
        value = trial.suggest_float("loss.temperature", 0.05, 0.2)
        if trial.number == 1:
            raise optuna.TrialPruned("pruned at epoch 0")
        if trial.number == 2:
            trial.set_user_attr("reason", "RuntimeError: out of memory")  # as make_objective
            raise RuntimeError("out of memory")
        return value * 10

    study = run_study(settings, PretrainParams(), tmp_path, objective=objective, tracking=tracking)
    (parent,) = _runs(tracking, **{"gair.role": "study", "gair.study": settings.study_name})
    assert parent.info.status == "FINISHED" and parent.data.params["metric"] == "val/r@1"
    assert parent.data.metrics["best_objective"] == study.best_value
    assert parent.data.metrics["trials/complete"] == 1 and parent.data.tags["gair.best_trial"] == "0"
    trials = {int(r.data.tags["gair.trial"]): r for r in _runs(
        tracking, **{"mlflow.parentRunId": parent.info.run_id})}
    assert set(trials) == {0, 1, 2}
    for number, run in trials.items():
        frozen = study.trials[number]
        assert run.data.tags["gair.study"] == settings.study_name
        assert run.data.params["loss.temperature"] == str(frozen.params["loss.temperature"])
        assert run.data.tags["optuna.state"] == frozen.state.name
        assert run.info.run_name == f"sweep/{settings.study_name}/trial-{number:05d}"
    assert trials[0].data.metrics["objective"] == pytest.approx(study.trials[0].value)
    assert [trials[n].info.status for n in (0, 1, 2)] == ["FINISHED", "KILLED", "FAILED"]
    assert "out of memory" in trials[2].data.tags["optuna.reason"]


@pytest.mark.slow
def test_a_sweep_trial_s_pretraining_logs_into_the_trial_s_run(tiny_shards, tmp_path):
    from gair.sweep import SweepSettings, run_study

    tracking = resolve(TrackingParams(local_dir=str(tmp_path / "mlruns")))
    settings = SweepSettings.from_params(SweepParams(
        study_name="trained", storage_dir=str(tmp_path / "sweep"), metric="val/loss",
        direction="minimize", n_trials=1, total_trials=1, pruner={"type": "none"},
        budget={"trainer.max_epochs": 1, "trainer.limit_train_batches": 2,
                "trainer.enable_progress_bar": False},
        search_space={"loss.temperature": {"type": "float", "low": 0.05, "high": 0.2}},
    ))
    base = PretrainParams(**tiny_pretrain_params(), run_dir=str(tmp_path / "unused"))
    study = run_study(settings, base, tiny_shards, tracking=tracking)
    (trial,) = _runs(tracking, **{"gair.trial": "0"})
    assert trial.info.run_id == study.trials[0].user_attrs["mlflow_run_id"]
    assert trial.info.status == "FINISHED"
    assert trial.data.metrics["objective"] == pytest.approx(study.trials[0].value)
    assert trial.data.metrics["val/loss"] == pytest.approx(study.trials[0].value)
    assert _steps(tracking, trial.info.run_id, "train/loss") == [0, 1]
    assert trial.data.params["trainer.max_epochs"] == "1"
    assert trial.data.params["loss.temperature"] == str(study.trials[0].params["loss.temperature"])
    assert list((tmp_path / "mlruns" / "tensorboard" / "sweep" / "trained" / "trial-00000" /
                 "version_0").glob("events.out.tfevents.*")), "the trial's curves survive it"


def test_evaluation_metrics_are_one_run_with_the_table(tmp_path):
    from gair.parameters import EvaluateParams
    from gair.pipelines.evaluate.nodes import track_evaluation

    metrics = {"eval/retrieval/gair_s0/r@1": 0.25, "eval/summary/downstream_tasks": 6,
               "eval/geolocalisation/gair_s0/median_km": 12.5}
    params = TrackingParams(local_dir=str(tmp_path / "mlruns"))
    track_evaluation(metrics, "| task | GAIR |\n", EvaluateParams(seeds=[0, 1]), params, {})
    (run,) = _runs(resolve(params), **{"gair.pipeline": "evaluate"})
    assert run.info.run_name == "evaluate" and run.info.status == "FINISHED"
    assert run.data.metrics == {metric_key(k): v for k, v in metrics.items()}
    assert "eval/retrieval/gair_s0/r_at_1" in run.data.metrics
    assert run.data.params["seeds"] == "[0, 1]"
    from mlflow.artifacts import download_artifacts

    table = download_artifacts(run_id=run.info.run_id, artifact_path="evaluation.md",
                               dst_path=str(tmp_path), tracking_uri=resolve(params).tracking_uri)
    assert Path(table).read_text() == "| task | GAIR |\n"
    off = TrackingParams(local_dir=str(tmp_path / "off"), mlflow=False)
    track_evaluation(metrics, "", EvaluateParams(), off, {})
    assert not (tmp_path / "off").exists()


def test_the_tracking_uri_comes_from_parameters_the_environment_or_credentials(
        tmp_path, monkeypatch):
    local = tmp_path / "mlruns"
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    default = resolve(TrackingParams(local_dir=str(local)))
    assert default.tracking_uri == f"sqlite:///{local / 'mlflow.db'}"
    assert default.tensorboard_dir == str(local / "tensorboard")
    assert default.artifact_location == (local / "artifacts").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    served = resolve(TrackingParams(local_dir=str(local)))
    assert served.tracking_uri == "http://mlflow.example:5000"
    assert served.artifact_location is None, "a server stores artifacts itself"
    monkeypatch.setenv("GAIR_TEST_TRACKING", "sqlite:///other.db")
    assert resolve(TrackingParams(tracking_uri="env:GAIR_TEST_TRACKING")
                   ).tracking_uri == "sqlite:///other.db"
    entry = {"mlflow_tracking": {"url": "postgresql://u@db/mlflow"}}
    assert resolve(TrackingParams(tracking_uri="credentials:mlflow_tracking"), entry
                   ).tracking_uri == "postgresql://u@db/mlflow"
    with pytest.raises(ValueError, match=r"add `mlflow_tracking: \{url: \.\.\.\}` to conf/local"):
        resolve(TrackingParams(tracking_uri="credentials:mlflow_tracking"))
    with pytest.raises(ValueError, match=r"\$GAIR_UNSET_TRACKING, which is not set"):
        resolve(TrackingParams(tracking_uri="env:GAIR_UNSET_TRACKING"))
    off = resolve(TrackingParams(mlflow=False, tensorboard=False))
    assert off.tracking_uri is None and off.tensorboard_dir is None
    assert tracking_loggers(tmp_path, {}, off) == [] and tracking_loggers(tmp_path, {}, None) == []


def test_a_password_in_the_tracking_uri_is_never_shown(tmp_path, monkeypatch, caplog, capsys):
    # A working store whose URI holds a password (SQLite ignores the unknown URI option).
    uri = f"sqlite:///file:{tmp_path / 'mlflow.db'}?mode=rwc&password={SECRET}&uri=true"
    with pytest.raises(ValueError, match=r"credentials:mlflow_tracking") as refused:
        TrackingParams(tracking_uri=uri)
    assert SECRET not in str(refused.value) and "password=***" in str(refused.value)

    monkeypatch.setenv("GAIR_TEST_TRACKING", uri)
    caplog.set_level(logging.DEBUG)
    tracking = resolve(TrackingParams(tracking_uri="env:GAIR_TEST_TRACKING",
                                      local_dir=str(tmp_path / "local"))).for_run("p", {"k": "v"})
    assert tracking.tracking_uri == uri and SECRET not in repr(tracking)
    spec = {"shards_dir": "shards", "run_dir": str(tmp_path / "run"),
            "params": PretrainParams(**tiny_pretrain_params()).model_dump(mode="json")}
    (tensorboard, mlflow_logger) = tracking_loggers(tmp_path / "run", spec, tracking)
    mlflow_logger.log_metrics({"train/loss": 1.5, "val/r@1": 0.5}, step=3)
    mlflow_logger.finalize("success")
    tensorboard.finalize("success")
    log_run(tracking.for_run("evaluate"), {"eval/x": 1.0}, {"seeds": [0]})
    # The launched ranks get the URI through their environment, never the spec file.
    entry, environment = tracking.to_spec()
    assert SECRET not in json.dumps(entry) and environment["GAIR_MLFLOW_TRACKING_URI"] == uri
    monkeypatch.setenv("GAIR_MLFLOW_TRACKING_URI", uri)
    assert Tracking.from_spec(json.loads(json.dumps(entry))) == tracking

    runs = _runs(tracking)
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}
    (trained,) = [r for r in runs if r.info.run_name == "p"]
    assert trained.data.metrics == {"train/loss": 1.5, "val/r_at_1": 0.5}
    shown = [caplog.text, *capsys.readouterr()]
    for run in runs:
        shown += [json.dumps(run.data.params), json.dumps(run.data.tags), run.info.artifact_uri]
    assert "***" in caplog.text, "the store is named, its password masked"
    for text in shown:
        assert SECRET not in text


def test_an_error_that_shows_the_tracking_password_is_raised_masked(tmp_path, monkeypatch):
    uri = f"postgresql://gair:{SECRET}@127.0.0.1:1/mlflow"
    tracking = Tracking(tracking_uri=uri, run_name="p")
    from gair.tracking import masked_errors

    with pytest.raises(RuntimeError) as caught, masked_errors(tracking):
        raise ConnectionError(f"could not connect to {uri}")
    assert SECRET not in str(caught.value) and caught.value.__cause__ is None
    with pytest.raises(ValueError, match="plain"), masked_errors(tracking):
        raise ValueError("plain")  # an error without the password passes unchanged


def test_the_hook_hands_the_tracking_nodes_the_credentials_entry_the_uri_names(tmp_path):
    import yaml
    from kedro.framework.project import configure_project
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    from gair.hooks import TRACKING_CREDENTIALS
    from tests.conftest import PROJECT_ROOT, temporary_conf

    entry = {"url": f"postgresql://gair:{SECRET}@db-host/mlflow"}
    conf = temporary_conf(tmp_path)
    (conf / "local" / "credentials.yml").write_text(yaml.safe_dump(
        {"mlflow_tracking": entry, "unrelated": {"key": "not for tracking"}}))
    bootstrap_project(PROJECT_ROOT)
    configure_project("gair")

    def handed_over(tracking_uri: str | None) -> dict:
        (conf / "local" / "parameters.yml").write_text(
            yaml.safe_dump({"tracking": {"tracking_uri": tracking_uri}}))
        with KedroSession.create(project_path=PROJECT_ROOT, conf_source=str(conf)) as session:
            return session.load_context().catalog.load(TRACKING_CREDENTIALS)

    assert handed_over("credentials:mlflow_tracking") == {"mlflow_tracking": entry}
    assert handed_over(None) == {}, "no credentials where the URI names none"


def test_launched_ranks_get_the_tracking_and_its_password_only_through_the_environment(
        tmp_path, monkeypatch):
    import subprocess

    from gair.training import run as run_module
    from gair.training.__main__ import main

    uri = f"postgresql://gair:{SECRET}@db-host/mlflow"
    tracking = Tracking(tracking_uri=uri, tensorboard_dir=str(tmp_path / "tb"), run_name="p")
    params = PretrainParams(**tiny_pretrain_params(devices=2), run_dir=str(tmp_path / "run"))
    launched = {}

    def launch(command, check, env):
        launched.update(command=command, env=env)
        (tmp_path / "run" / "summary.json").write_text("{}")

    monkeypatch.setattr(subprocess, "run", launch)
    assert run_module.pretrain(tmp_path / "shards", params, tracking) == {}
    spec_file = launched["command"][-1]
    assert SECRET not in Path(spec_file).read_text()
    assert launched["env"]["GAIR_MLFLOW_TRACKING_URI"] == uri
    # What each rank runs: the spec without its tracking, and the tracking from both.
    received = {}
    monkeypatch.setattr("gair.training.__main__.run_pretraining",
                        lambda spec, tracking: received.update(spec=spec, tracking=tracking))
    monkeypatch.setenv("GAIR_MLFLOW_TRACKING_URI", uri)
    main([spec_file])
    assert received["tracking"] == tracking and "tracking" not in received["spec"]
    assert received["spec"]["params"] == params.model_dump(mode="json")
