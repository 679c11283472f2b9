"""Nodes of the ``sweep`` pipeline (tuning at node level: one node runs the study)."""

import logging
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from gair.parameters import PretrainParams, SweepParams, TrackingParams

logger = logging.getLogger(__name__)


def run_sweep(shards_dir: Path, pretrain: PretrainParams, sweep: SweepParams,
              storage_credentials: dict, tracking: TrackingParams,
              tracking_credentials: dict) -> tuple[dict, pd.DataFrame, Figure, Figure, Figure]:
    """Run this worker's share of the study; return the best parameters, trials and plots.

    ``storage_credentials`` is the credentials entry ``sweep.storage: credentials:NAME``
    names, or empty (a project hook reads it from ``conf/local/credentials.yml``);
    ``tracking``: the study and each trial as MLflow runs, trials' curves in TensorBoard."""
    from gair.reporting.sweep_plots import sweep_figures
    from gair.sweep import SweepSettings, best_pretrain_parameters, run_study
    from gair.tracking import resolve

    settings = SweepSettings.from_params(sweep, storage_credentials)
    study = run_study(settings, pretrain, shards_dir,
                      tracking=resolve(tracking, tracking_credentials))
    trials = study.trials_dataframe(attrs=("number", "value", "state", "params", "user_attrs",
                                           "datetime_start", "datetime_complete", "duration"))
    if not any(t.state.name == "COMPLETE" for t in study.trials):
        raise RuntimeError(f"study {settings.study_name!r} has no completed trial; see the trials "
                           "table's user_attrs_reason column")
    return (best_pretrain_parameters(study, pretrain), trials,
            *sweep_figures(study, settings.metric))
