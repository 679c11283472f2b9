"""``sweep`` pipeline: Optuna over pretraining hyperparameters on the shards."""

from kedro.pipeline import Node, Pipeline

from gair.hooks import SWEEP_STORAGE_CREDENTIALS, TRACKING_CREDENTIALS

from .nodes import run_sweep


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(run_sweep, ["training_shards", "params:pretrain", "params:sweep",
                             SWEEP_STORAGE_CREDENTIALS, "params:tracking", TRACKING_CREDENTIALS],
                 ["sweep_best_parameters", "sweep_trials", "sweep_history_plot",
                  "sweep_importance_plot", "sweep_parallel_plot"],
                 name="run_sweep_node"),
        ],
        tags="sweep",
    )
