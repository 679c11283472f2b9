"""One study shared by any number of workers: storage, search space, objective, pruning.

A trial is a short-budget pretraining run (``gair.training.run_pretraining``) scored by a
validation metric. Trials that diverge are pruned with their reason, trials that raise are
recorded as failed with theirs, and the study goes on. Workers on one host share a journal
file; workers on many hosts share a database (e.g. PostgreSQL), with heartbeats so a
killed worker's trial is failed and retried. A database URL with a password never is a
parameter (kedro-viz and logs show parameters): ``storage`` names where it is, an environment
variable (``env:VAR``) or a Kedro credentials entry (``credentials:NAME``), and wherever the
URL is shown its password reads ``***``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.study import MaxTrialsCallback
from optuna.trial import TrialState
from pydantic import Field

from gair.parameters import DistributionParams, PretrainParams, SweepParams
from gair.secrets import passwords_masked_in_errors, redact_url

if TYPE_CHECKING:
    from gair.tracking import Tracking

logger = logging.getLogger(__name__)


class SweepSettings(SweepParams):
    """The sweep's parameters (``parameters_sweep.yml``, :class:`SweepParams`) with the
    Kedro credentials entry that ``storage: credentials:NAME`` names, as
    ``{NAME: {"url": ...}}`` (the project's hook hands it over). The credentials are kept
    out of the repr, which logs may show, and out of every dump."""

    credentials: dict[str, Any] = Field(default={}, repr=False, exclude=True)

    @classmethod
    def from_params(cls, params: SweepParams,
                    credentials: dict[str, Any] | None = None) -> SweepSettings:
        """The settings ``params`` give; ``credentials`` holds the entry ``credentials:NAME``
        names."""
        return cls(**dict(params), credentials=credentials or {})


def resolve_storage(settings: SweepSettings) -> str:
    """``journal``, ``sqlite`` or the database URL that ``settings.storage`` names."""
    kind = settings.storage
    if kind.startswith("env:"):
        name = kind.removeprefix("env:")
        if not os.environ.get(name):
            raise ValueError(f"sweep storage is read from ${name}, which is not set")
        return os.environ[name]
    if kind.startswith("credentials:"):
        name = kind.removeprefix("credentials:")
        url = (settings.credentials.get(name) or {}).get("url")
        if not url:
            raise ValueError(f"sweep storage is read from the credentials entry {name!r}, "
                             f"which is not set: add `{name}: {{url: ...}}` to "
                             "conf/local/credentials.yml")
        return url
    return kind


def make_storage(settings: SweepSettings) -> optuna.storages.BaseStorage | str:
    """The study's storage: an embedded journal/SQLite file, or a database URL."""
    directory = Path(settings.storage_dir)
    kind = resolve_storage(settings)
    if kind == "journal":
        directory.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(directory / "optuna_journal.log")))
    if kind == "sqlite":
        directory.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{(directory / 'optuna.db').resolve()}"
    # A database shared by several machines: heartbeats fail a dead worker's trial and retry it.
    with passwords_masked_in_errors(kind):
        return _database_storage(kind, settings)


def _database_storage(url: str, settings: SweepSettings) -> RDBStorage:
    from sqlalchemy.exc import SQLAlchemyError

    for attempt in range(5):
        try:
            with warnings.catch_warnings():  # the retry callback is marked experimental
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return RDBStorage(
                    url, heartbeat_interval=settings.heartbeat_interval,
                    grace_period=settings.grace_period,
                    heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1),
                    engine_kwargs={"pool_pre_ping": True},
                )
        except SQLAlchemyError:
            # Workers that start together race to create Optuna's tables; the loser retries.
            if attempt == 4:
                raise
            time.sleep(0.5 + random.random() * (attempt + 1))
    raise AssertionError("unreachable")


def make_pruner(config: dict[str, Any]) -> optuna.pruners.BasePruner:
    options = {k: v for k, v in config.items() if k != "type"}
    kind = config.get("type", "median")
    if kind == "median":
        return optuna.pruners.MedianPruner(**options)
    if kind == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(**options)
    if kind == "hyperband":
        return optuna.pruners.HyperbandPruner(**options)
    if kind == "percentile":
        return optuna.pruners.PercentilePruner(**options)
    if kind == "threshold":
        return optuna.pruners.ThresholdPruner(**options)
    if kind == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"unknown pruner {kind!r} "
                     "(median, percentile, successive_halving, hyperband, threshold, none)")


def open_study(settings: SweepSettings, sampler_seed: int | None = None) -> optuna.Study:
    """Create the study, or join it if another worker (or an earlier run) made it."""
    return optuna.create_study(
        study_name=settings.study_name, storage=make_storage(settings),
        direction=settings.direction, load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=settings.seed if sampler_seed is None
                                           else sampler_seed),
        pruner=make_pruner(settings.pruner),
    )


def worker_seed(settings: SweepSettings, finished: int) -> int:
    """The sampler seed of this worker: different per worker and per restart, so workers
    (and a restarted sweep) do not propose the same first values again. Set
    ``GAIR_SWEEP_WORKER`` to 0, 1, ... for reproducible seeds; otherwise the process id."""
    worker = int(os.environ.get("GAIR_SWEEP_WORKER", os.getpid()))
    return (settings.seed * 1_000_003 + finished * 7_919 + worker) % 2**31


def suggest(trial: optuna.Trial, space: dict[str, DistributionParams]) -> dict[str, Any]:
    """Values for the dotted parameter paths of ``space`` (float, int or categorical)."""
    values = {}
    for name, spec in space.items():
        if spec.type == "float":
            values[name] = trial.suggest_float(name, spec.low, spec.high, log=spec.log)
        elif spec.type == "int":
            values[name] = trial.suggest_int(name, spec.low, spec.high, log=spec.log)
        else:
            values[name] = trial.suggest_categorical(name, spec.choices)
    return values


class Diverged(RuntimeError):
    """The training loss became NaN or infinite."""


def _callbacks(trial: optuna.Trial, settings: SweepSettings, pruning: bool) -> list:
    import lightning as L
    from optuna_integration import PyTorchLightningPruningCallback

    class Guard(L.Callback):
        """Fails fast on a non-finite loss and records the steps a trial spent."""

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs
            trial.set_user_attr("steps", trainer.global_step)
            if loss is not None and not math.isfinite(float(loss)):
                raise Diverged(f"training loss became {float(loss)} at step {trainer.global_step}")

    callbacks: list = [Guard()]
    if pruning:
        callbacks.append(PyTorchLightningPruningCallback(trial, monitor=settings.metric))
    return callbacks


def make_objective(settings: SweepSettings, base_params: PretrainParams, shards_dir: Path,
                   tracking: Tracking | None = None, study_run_id: str | None = None):
    """The objective: a short pretraining run with the trial's values, scored by the metric.

    With ``tracking``, each trial's pretraining logs to its own TensorBoard folder and
    MLflow run (nested under ``study_run_id``, the study's run); :class:`TrialTracker`
    adds the trial's values and outcome to that run when the trial ends."""
    from gair.training.run import run_pretraining

    pruning = settings.pruner.get("type", "median") != "none"

    def trial_params(values: dict[str, Any], run_dir: Path) -> PretrainParams:
        return base_params.with_overrides(settings.budget | values
                                          | {"run_dir": str(run_dir), "resume": False})

    # A search space or budget that cannot make valid parameters stops here, not in every trial.
    trial_params({name: spec.low if spec.low is not None else (spec.choices or [None])[0]
                  for name, spec in settings.search_space.items()}, Path("unused"))

    def objective(trial: optuna.Trial) -> float:
        run_dir = Path(settings.storage_dir) / "trials" / f"{settings.study_name}-{trial.number:05d}"
        try:
            params = trial_params(suggest(trial, settings.search_space), run_dir)
            spec = {"shards_dir": str(shards_dir), "run_dir": str(run_dir),
                    "params": params.model_dump(mode="json")}
            summary = run_pretraining(spec, callbacks=_callbacks(trial, settings, pruning),
                                      tracking=_trial_tracking(trial, settings, tracking,
                                                               study_run_id))
        except Diverged as error:
            trial.set_user_attr("reason", f"diverged: {error}")
            raise optuna.TrialPruned(f"diverged: {error}") from error
        except optuna.TrialPruned:
            trial.set_user_attr("reason", "pruned")
            raise
        except Exception as error:
            trial.set_user_attr("reason", f"{type(error).__name__}: {error}")
            raise
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)  # trials keep values, not weights
        trial.set_user_attr("steps", summary["global_step"])
        value = summary["metrics"].get(settings.metric)
        if value is None or not math.isfinite(value):
            raise optuna.TrialPruned(f"no finite {settings.metric} at the end of training")
        return float(value)

    return objective


_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
# Running trials count against the budget too (another worker's), queued ones do not.
_COUNTED = (*_FINISHED, TrialState.RUNNING)


def _log_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in trial.params.items())
    logger.info("Trial %d %s value=%s steps=%s [%s] %s", trial.number, trial.state.name,
                trial.value, trial.user_attrs.get("steps"), params,
                trial.user_attrs.get("reason", ""))


def _trial_tracking(trial: optuna.Trial, settings: SweepSettings, tracking: Tracking | None,
                    study_run_id: str | None) -> Tracking | None:
    """Where a trial's pretraining logs: its own TensorBoard folder and MLflow run."""
    if tracking is None:
        return None
    from dataclasses import replace

    from gair.tracking import start_run

    where = tracking.for_run(f"sweep/{settings.study_name}/trial-{trial.number:05d}",
                             _trial_tags(settings, trial.number))
    if where.tracking_uri is None:
        return where
    run_id = start_run(where, parent_run_id=study_run_id)
    trial.set_user_attr("mlflow_run_id", run_id)
    return replace(where, run_id=run_id)


def _trial_tags(settings: SweepSettings, number: int) -> dict[str, str]:
    return {"gair.pipeline": "sweep", "gair.study": settings.study_name,
            "gair.trial": str(number)}


class TrialTracker:
    """The study as an MLflow run, and each trial as a run nested under it, with the
    trial's values, objective value, state and reason (an Optuna callback; the trial's
    training curves are in the same run when the objective is :func:`make_objective`'s)."""

    def __init__(self, tracking: Tracking, settings: SweepSettings, storage_url: str):
        from gair.tracking import find_run, log_to_run, start_run

        self.tracking, self.settings = tracking, settings
        tags = {"gair.pipeline": "sweep", "gair.role": "study", "gair.study": settings.study_name}
        # Every worker (and every restart) of a study logs under one study run.
        self.run_id = find_run(tracking, tags)
        if self.run_id is None:
            self.run_id = start_run(tracking.for_run(f"sweep/{settings.study_name}"), tags)
        log_to_run(tracking, self.run_id, params={
            "metric": settings.metric, "direction": settings.direction,
            "total_trials": settings.total_trials, "seed": settings.seed,
            "pruner": settings.pruner, "budget": settings.budget,
            "search_space": settings.search_space,
        }, tags={"gair.storage": redact_url(storage_url)})

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        from gair.tracking import log_to_run, start_run, trial_status

        run_id = trial.user_attrs.get("mlflow_run_id") or start_run(
            self.tracking.for_run(f"sweep/{self.settings.study_name}/trial-{trial.number:05d}",
                                  _trial_tags(self.settings, trial.number)),
            parent_run_id=self.run_id)
        log_to_run(self.tracking, run_id, params=trial.params,
                   metrics={"objective": trial.value} if trial.value is not None else None,
                   step=trial.user_attrs.get("steps") or 0,
                   tags={"optuna.state": trial.state.name, "gair.objective": self.settings.metric,
                         "optuna.reason": trial.user_attrs.get("reason", "")},
                   status=trial_status(trial.state.name))

    def finish(self, study: optuna.Study) -> None:
        """The study's counts and best value so far on the study run."""
        from gair.tracking import log_to_run

        finished = study.get_trials(deepcopy=False, states=_FINISHED)
        counts = {f"trials/{s.name.lower()}": sum(t.state == s for t in finished)
                  for s in _FINISHED}
        best = study.best_trial if counts["trials/complete"] else None
        log_to_run(self.tracking, self.run_id, step=len(finished), status="FINISHED",
                   metrics=counts | ({"best_objective": best.value} if best else {}),
                   tags={"gair.best_trial": str(best.number) if best else "",
                         "gair.best_params": json.dumps(best.params) if best else ""})


def run_study(settings: SweepSettings, base_params: PretrainParams, shards_dir: Path,
              objective=None, tracking: Tracking | None = None) -> optuna.Study:
    """Run this worker's trials of the shared study, within the study's total budget.

    With ``tracking``, the study is an MLflow run and each trial one nested under it
    (:class:`TrialTracker`), and each trial's pretraining logs to TensorBoard."""
    url = resolve_storage(settings)
    done = len(open_study(settings).get_trials(deepcopy=False, states=_FINISHED))
    study = open_study(settings, worker_seed(settings, done))
    remaining = settings.total_trials - done
    logger.info("Study %r (storage %s): %d trials finished before this worker, %d left in "
                "its budget", settings.study_name, redact_url(url), done, max(remaining, 0))
    if remaining <= 0:
        return study
    tracker = (TrialTracker(tracking, settings, url)
               if tracking is not None and tracking.tracking_uri else None)
    with passwords_masked_in_errors(url):  # a database error while the study runs
        study.optimize(
            objective or make_objective(settings, base_params, shards_dir, tracking,
                                        tracker.run_id if tracker else None),
            # MaxTrialsCallback stops every worker once the whole study reaches its budget.
            n_trials=min(settings.n_trials, remaining),
            callbacks=[MaxTrialsCallback(settings.total_trials, states=_COUNTED), _log_trial,
                       *([tracker] if tracker else [])],
            catch=(Exception,),
            gc_after_trial=True,
        )
    if tracker is not None:
        tracker.finish(study)
    counts = {s.name: len(study.get_trials(deepcopy=False, states=(s,))) for s in
              (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)}
    best = study.best_trial if counts["COMPLETE"] else None
    logger.info("Study %r: %s; best %s", settings.study_name, counts,
                f"#{best.number} {settings.metric}={best.value:.4f} {best.params}" if best else "none")
    return study


def best_pretrain_parameters(study: optuna.Study, base_params: PretrainParams) -> dict[str, Any]:
    """The best trial's values in the shape of ``parameters_pretrain.yml`` (full budget)."""
    return {"pretrain": base_params.with_overrides(study.best_trial.params).model_dump(
        mode="json")}
