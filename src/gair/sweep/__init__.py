"""Optuna sweeps over the pretraining hyperparameters the paper leaves unknown (no Kedro)."""

from gair.sweep.study import (
    SweepSettings,
    best_pretrain_parameters,
    make_storage,
    open_study,
    run_study,
    suggest,
)

__all__ = ["SweepSettings", "best_pretrain_parameters", "make_storage", "open_study",
           "run_study", "suggest"]
