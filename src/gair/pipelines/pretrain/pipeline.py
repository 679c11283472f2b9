"""``pretrain`` pipeline: shards -> GAIR checkpoint, metrics and curves."""

from kedro.pipeline import Node, Pipeline

from gair.hooks import TRACKING_CREDENTIALS

from .nodes import plot_training_curves, pretrain_gair


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(pretrain_gair, ["training_shards", "params:pretrain", "params:tracking",
                                 TRACKING_CREDENTIALS],
                 ["gair_checkpoint", "pretrain_metrics", "pretrain_history"],
                 name="pretrain_gair_node"),
            Node(plot_training_curves, "pretrain_history", "pretrain_curves",
                 name="plot_training_curves_node"),
        ],
        tags="pretrain",
    )
