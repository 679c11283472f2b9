"""Experiment tracking beside the CSV logs: TensorBoard event files and MLflow runs (no Kedro).

``tracking:`` in ``conf/base/parameters.yml`` (:class:`gair.parameters.TrackingParams`) says
what is logged where; :func:`resolve` turns it into a :class:`Tracking`, and
:func:`tracking_loggers` into the Lightning loggers a pretraining run adds to its CSV logger
(``<run_dir>/logs``, which :func:`gair.training.run.read_history` reads).

- TensorBoard: ``<local_dir>/tensorboard/<run name>/version_<n>``, one version per launch.
  Not in the run folder: that folder is a DVC output that a rerun reproduces byte for
  byte, and event files hold wall-clock times and the host name.
- MLflow: the URI ``tracking_uri`` names, else ``$MLFLOW_TRACKING_URI``, else the SQLite
  store ``<local_dir>/mlflow.db`` with artifacts in ``<local_dir>/artifacts``. MLflow 3
  refuses its plain ``mlruns/`` file store (maintenance mode, opt-in with
  ``MLFLOW_ALLOW_FILE_STORE``); SQLite is its local default and needs no server.
- A URI with a password is never a parameter (``kedro viz`` and logs show parameters): it
  comes from ``env:VAR`` or ``credentials:NAME``, reads ``***`` wherever it is shown, and
  reaches ranks launched as processes through their environment, never a file.
- MLflow's usage telemetry is off: ``import gair`` sets ``MLFLOW_DISABLE_TELEMETRY``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
import warnings
from argparse import Namespace
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import Logger, MLFlowLogger, TensorBoardLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from gair.parameters import TrackingParams
from gair.secrets import passwords_masked_in_errors, redact_url, url_passwords

logger = logging.getLogger(__name__)

LOCAL_STORE = "mlflow.db"
URI_ENV = "GAIR_MLFLOW_TRACKING_URI"
"""Hands ranks launched as processes a tracking URI that holds a password."""
SPEC_HASH = "gair.spec_hash"
"""The tag that finds an interrupted run's MLflow run again when the run resumes."""
_REMOTE = ("http://", "https://", "databricks")
_RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID",
                   "JSM_NAMESPACE_RANK")
_MAX_PARAM_VALUE = 6000  # MLflow 3's limit
_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}

# mlflow's SQLAlchemy store under SQLAlchemy 2.1: a deprecation inside mlflow itself.
warnings.filterwarnings("ignore", message=r"The ``noload`` loader strategy is deprecated")


@dataclass(frozen=True)
class Tracking:
    """Where one run is logged beside its CSV logs, and as what (see :func:`resolve`)."""

    experiment: str = "gair"
    tracking_uri: str | None = None  # the MLflow URI; None: no MLflow run
    tensorboard_dir: str | None = None  # None: no TensorBoard logs
    artifact_location: str | None = None  # of the experiment, where this creates it
    run_name: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    run_id: str | None = None  # log into this existing MLflow run (a sweep trial's)

    def __repr__(self) -> str:
        uri = None if self.tracking_uri is None else redact_url(self.tracking_uri)
        return (f"Tracking(experiment={self.experiment!r}, tracking_uri={uri!r}, "
                f"tensorboard_dir={self.tensorboard_dir!r}, run_name={self.run_name!r}, "
                f"tags={self.tags!r}, run_id={self.run_id!r})")

    def for_run(self, run_name: str, tags: Mapping[str, Any] | None = None) -> Tracking:
        """This tracking for the run ``run_name`` (MLflow run name, TensorBoard folder),
        with ``tags`` added."""
        return replace(self, run_name=run_name,
                       tags=self.tags | {k: str(v) for k, v in (tags or {}).items()})

    def to_spec(self) -> tuple[dict[str, Any], dict[str, str]]:
        """This tracking as JSON for the spec file of ranks launched as processes, and the
        environment they need: a URI with a password goes there, never into the file."""
        entry = asdict(self)
        if self.tracking_uri and url_passwords(self.tracking_uri):
            entry |= {"tracking_uri": None, "tracking_uri_env": URI_ENV}
            return entry, {URI_ENV: self.tracking_uri}
        return entry, {}

    @classmethod
    def from_spec(cls, entry: Mapping[str, Any] | None) -> Tracking | None:
        """The tracking :meth:`to_spec` wrote (None: CSV logs only)."""
        if entry is None:
            return None
        values = dict(entry)
        if name := values.pop("tracking_uri_env", None):
            values["tracking_uri"] = _from_environment(name)
        return cls(**values)


def resolve(params: TrackingParams, credentials: Mapping[str, Any] | None = None) -> Tracking:
    """Where runs are logged as ``params`` say; ``credentials`` holds the Kedro credentials
    entry that ``tracking_uri: credentials:NAME`` names (the project's hook hands it over)."""
    local = Path(params.local_dir).absolute()
    uri = resolve_tracking_uri(params.tracking_uri, local, credentials) if params.mlflow else None
    artifacts = None
    if uri is not None and not uri.startswith(_REMOTE):  # a server stores artifacts itself
        artifacts = (local / "artifacts").as_uri()
    return Tracking(experiment=params.experiment, tracking_uri=uri,
                    tensorboard_dir=str(local / "tensorboard") if params.tensorboard else None,
                    artifact_location=artifacts)


def resolve_tracking_uri(value: str | None, local_dir: Path,
                         credentials: Mapping[str, Any] | None = None) -> str:
    """The MLflow tracking URI ``value`` names: ``env:VAR``, ``credentials:NAME`` or a URI;
    None: ``$MLFLOW_TRACKING_URI`` if set, else the SQLite store in ``local_dir``."""
    if value is None:
        return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{local_dir / LOCAL_STORE}"
    if value.startswith("env:"):
        return _from_environment(value.removeprefix("env:"))
    if value.startswith("credentials:"):
        name = value.removeprefix("credentials:")
        entry = (credentials or {}).get(name)
        uri = entry.get("url") if isinstance(entry, Mapping) else None
        if not uri:
            raise ValueError(f"the MLflow tracking URI is read from the credentials entry "
                             f"{name!r}, which is not set: add `{name}: {{url: ...}}` to "
                             "conf/local/credentials.yml")
        return str(uri)
    return value


def _from_environment(name: str) -> str:
    if not os.environ.get(name):
        raise ValueError(f"the MLflow tracking URI is read from ${name}, which is not set")
    return os.environ[name]


@contextmanager
def masked_errors(tracking: Tracking | None) -> Iterator[None]:
    """Re-raise an error that shows the tracking URI's password with it masked."""
    uri = tracking.tracking_uri if tracking is not None else None
    if not uri or not url_passwords(uri):
        yield
        return
    with passwords_masked_in_errors(uri):
        yield


def metric_key(name: str) -> str:
    """``name`` as MLflow accepts it (no ``@``, ``val/r@1`` -> ``val/r_at_1``)."""
    return re.sub(r"[^\w./\- ]", "_", name.replace("@", "_at_"))


def flat_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested ``params`` as dotted names (``loss.temperature``, as the sweep's search space
    names them) and text values, cut to MLflow's limit."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat |= flat_params(value, f"{name}.")
        else:
            flat[metric_key(name)] = str(value)[:_MAX_PARAM_VALUE]
    return flat


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


@cache
def _client(uri: str):
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from mlflow import MlflowClient

    if uri.startswith("sqlite:///"):  # SQLite creates the file, not its folder
        path = uri.removeprefix("sqlite:///").split("?")[0].removeprefix("file:")
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    return MlflowClient(uri)


def _experiment_id(client, tracking: Tracking) -> str:
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(tracking.experiment)
    if experiment is None:
        try:
            return client.create_experiment(tracking.experiment,
                                             artifact_location=tracking.artifact_location)
        except MlflowException:  # another process created it first
            experiment = client.get_experiment_by_name(tracking.experiment)
            if experiment is None:
                raise
    if experiment.lifecycle_stage == "deleted":
        client.restore_experiment(experiment.experiment_id)
    return experiment.experiment_id


def start_run(tracking: Tracking, tags: Mapping[str, Any] | None = None,
              parent_run_id: str | None = None) -> str:
    """A new running MLflow run named ``tracking.run_name`` with the tracking's tags and
    ``tags`` (nested under ``parent_run_id``); its id."""
    from mlflow.tracking.context.registry import resolve_tags

    values = tracking.tags | {k: str(v) for k, v in (tags or {}).items()}
    if parent_run_id is not None:
        values["mlflow.parentRunId"] = parent_run_id
    with masked_errors(tracking):
        client = _client(tracking.tracking_uri)
        run = client.create_run(_experiment_id(client, tracking), run_name=tracking.run_name,
                                tags=resolve_tags(values))
    logger.info("MLflow run %s (%s) in experiment %r at %s", run.info.run_id,
                tracking.run_name, tracking.experiment, redact_url(tracking.tracking_uri))
    return run.info.run_id


def find_run(tracking: Tracking, tags: Mapping[str, str], unfinished: bool = False) -> str | None:
    """The latest run of the experiment with these tag values (and, if ``unfinished``, not
    finished), or None."""
    with masked_errors(tracking):
        client = _client(tracking.tracking_uri)
        experiment = client.get_experiment_by_name(tracking.experiment)
        if experiment is None:
            return None
        safe = {k: v for k, v in tags.items() if "'" not in v and "`" not in k}
        runs = client.search_runs(
            [experiment.experiment_id],
            " and ".join(f"tags.`{k}` = '{v}'" for k, v in safe.items()),
            order_by=["attributes.start_time DESC"], max_results=100)
    for run in runs:
        if all(run.data.tags.get(k) == v for k, v in tags.items()) and not (
                unfinished and run.info.status == "FINISHED"):
            return run.info.run_id
    return None


def log_params(client, run_id: str, params: Mapping[str, Any]) -> None:
    """Log ``params`` (flattened) to the run once: a value already logged is left alone
    (MLflow refuses to change one), a different one is skipped with a warning."""
    from mlflow.entities import Param

    existing = client.get_run(run_id).data.params
    new = []
    for key, value in flat_params(params).items():
        if key not in existing:
            new.append(Param(key, value))
        elif existing[key] != value:
            logger.warning("MLflow run %s keeps parameter %s=%s (not %s)", run_id, key,
                           existing[key], value)
    for start in range(0, len(new), 100):
        client.log_batch(run_id, params=new[start:start + 100])


def log_to_run(tracking: Tracking, run_id: str, *, metrics: Mapping[str, Any] | None = None,
               params: Mapping[str, Any] | None = None, tags: Mapping[str, Any] | None = None,
               texts: Mapping[str, str] | None = None, step: int = 0,
               status: str | None = None) -> None:
    """Log to an existing run: numeric ``metrics`` at ``step``, ``params``, ``tags``,
    ``texts`` as artifact files; then end it with ``status`` (e.g. FINISHED) if given."""
    from mlflow.entities import Metric, RunTag

    now = int(time.time() * 1000)
    values = [Metric(metric_key(k), float(v), now, step) for k, v in (metrics or {}).items()
              if isinstance(v, int | float)]
    labels = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
    with masked_errors(tracking):
        client = _client(tracking.tracking_uri)
        if params:
            log_params(client, run_id, params)
        for start in range(0, len(values), 1000):
            client.log_batch(run_id, metrics=values[start:start + 1000])
        for start in range(0, len(labels), 100):
            client.log_batch(run_id, tags=labels[start:start + 100])
        for name, text in (texts or {}).items():
            client.log_text(run_id, text, name)
        if status is not None:
            client.set_terminated(run_id, status)


def log_run(tracking: Tracking, metrics: Mapping[str, Any], params: Mapping[str, Any] | None = None,
            texts: Mapping[str, str] | None = None) -> str | None:
    """One finished MLflow run named ``tracking.run_name`` holding ``metrics`` (e.g. an
    evaluation's ``metrics.json``), ``params`` and text artifacts; its id (None: no MLflow)."""
    if tracking.tracking_uri is None:
        return None
    run_id = start_run(tracking)
    log_to_run(tracking, run_id, metrics=metrics, params=params, texts=texts, status="FINISHED")
    return run_id


def trial_status(state: str) -> str:
    """The MLflow run status of an Optuna trial state (pruned: KILLED)."""
    return _STATUS.get(state, "FAILED")


def is_global_rank_zero() -> bool:
    """True unless this process is a rank other than 0 (under Lightning's launcher,
    torchrun, SLURM or jsrun); only rank 0 logs to MLflow."""
    return all(os.environ.get(name, "0") == "0" for name in _RANK_VARIABLES)


class GairMLFlowLogger(MLFlowLogger):
    """Lightning's MLflow logger with dotted parameter names logged once (a resumed run
    logs them again) and metric names MLflow accepts (``val/r@1`` as ``val/r_at_1``).
    It logs into an existing run, and never calls ``mlflow.set_tracking_uri``, which would
    set ``$MLFLOW_TRACKING_URI`` for the whole process and its children."""

    def __init__(self, *, experiment_id: str, run_id: str, **kwargs: Any):
        super().__init__(run_id=run_id, **kwargs)
        self._experiment_id, self._initialized = experiment_id, True

    @rank_zero_only
    def log_hyperparams(self, params: Mapping[str, Any] | Namespace) -> None:
        values = vars(params) if isinstance(params, Namespace) else dict(params)
        log_params(self.experiment, self.run_id, values)

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        super().log_metrics({metric_key(k): v for k, v in metrics.items()}, step)


def tracking_loggers(run_dir: Path, spec: Mapping[str, Any], tracking: Tracking | None,
                     resuming: bool = False) -> list[Logger]:
    """The loggers a pretraining run adds to its CSV logger: TensorBoard and MLflow, as
    ``tracking`` says (None: none). The MLflow run is named and tagged with the run folder,
    seed and a hash of the parameters, and holds the parameters; a run that ``resuming``
    continues its interrupted MLflow run, found by the hash of its ``spec``."""
    if tracking is None:
        return []
    name = tracking.run_name or Path(run_dir).name
    loggers: list[Logger] = []
    if tracking.tensorboard_dir:
        loggers.append(TensorBoardLogger(tracking.tensorboard_dir, name=name,
                                         default_hp_metric=False))
    if tracking.tracking_uri and is_global_rank_zero():
        loggers.append(_mlflow_logger(Path(run_dir), spec, replace(tracking, run_name=name),
                                      resuming))
    return loggers


def _mlflow_logger(run_dir: Path, spec: Mapping[str, Any], tracking: Tracking,
                   resuming: bool) -> GairMLFlowLogger:
    params = dict(spec["params"])
    # What is computed: performance settings change how fast, and resume the same run.
    computed = {k: v for k, v in params.items() if k != "performance"}
    tags = {
        "gair.run_dir": str(run_dir.absolute()), "gair.shards_dir": str(spec["shards_dir"]),
        "gair.seed": str(params.get("seed")),
        "gair.config_hash": _digest({k: v for k, v in computed.items()
                                     if k not in ("run_dir", "resume")})[:12],
        SPEC_HASH: _digest(dict(spec) | {"params": computed}),
    }
    run_id = tracking.run_id
    if run_id is None and resuming:
        run_id = find_run(tracking, {SPEC_HASH: tags[SPEC_HASH]}, unfinished=True)
        if run_id is not None:
            logger.info("Resuming MLflow run %s", run_id)
    if run_id is None:
        run_id = start_run(tracking, tags)
    else:
        with masked_errors(tracking):
            _client(tracking.tracking_uri).update_run(run_id, status="RUNNING")
        log_to_run(tracking, run_id, tags=tags)
    with masked_errors(tracking):
        experiment_id = _client(tracking.tracking_uri).get_run(run_id).info.experiment_id
        mlflow_logger = GairMLFlowLogger(experiment_name=tracking.experiment,
                                         run_name=tracking.run_name,
                                         tracking_uri=tracking.tracking_uri,
                                         experiment_id=experiment_id, run_id=run_id)
        mlflow_logger.log_hyperparams(params)
    return mlflow_logger
