"""``evaluate`` pipeline: checkpoints -> embeddings -> downstream metrics, table and plots."""

from kedro.pipeline import Node, Pipeline

from gair.hooks import TRACKING_CREDENTIALS

from .nodes import (
    embed_models,
    plot_geolocalisation,
    plot_retrieval_examples,
    prepare_tasks,
    pretrain_baselines,
    report_results,
    score_benchmarks,
    score_models,
    track_evaluation,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(prepare_tasks,
                 ["pairs", "street_views", "sentinel2_tiles", "sample_world_truth",
                  "params:evaluate", "params:pair"],
                 ["eval_street_views", "eval_patches", "eval_points", "eval_task_report"],
                 name="prepare_tasks_node"),
            Node(pretrain_baselines, ["training_shards", "params:pretrain", "params:evaluate",
                                      "params:tracking", TRACKING_CREDENTIALS,
                                      "params:staging_dir"],
                 "baseline_checkpoints", name="pretrain_baselines_node"),
            Node(embed_models,
                 ["gair_checkpoint", "baseline_checkpoints", "training_shards", "eval_patches",
                  "eval_points", "sentinel2_tiles", "sentinel2_raw", "params:pretrain",
                  "params:evaluate", "params:pair", "params:staging_dir"],
                 "evaluation_embeddings", name="embed_models_node"),
            Node(score_models,
                 ["evaluation_embeddings", "eval_street_views", "eval_patches", "eval_points",
                  "sample_world_truth", "params:evaluate", "params:pair"],
                 "evaluation_results", name="score_models_node"),
            Node(score_benchmarks, ["evaluation_embeddings", "params:evaluate"],
                 ["benchmark_results", "benchmark_rejects"], name="score_benchmarks_node"),
            Node(report_results, ["evaluation_results", "benchmark_results", "params:evaluate"],
                 ["metrics", "evaluation_table", "evaluation_chart"], name="report_results_node"),
            Node(track_evaluation, ["metrics", "evaluation_table", "params:evaluate",
                                    "params:tracking", TRACKING_CREDENTIALS],
                 None, name="track_evaluation_node"),
            Node(plot_retrieval_examples,
                 ["evaluation_embeddings", "training_shards", "params:evaluate"],
                 "retrieval_examples", name="plot_retrieval_examples_node"),
            Node(plot_geolocalisation, ["evaluation_embeddings", "params:evaluate"],
                 "geolocalisation_map", name="plot_geolocalisation_node"),
        ],
        tags="evaluate",
    )
