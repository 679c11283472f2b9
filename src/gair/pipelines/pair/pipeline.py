"""``pair`` pipeline: street views in RS patches -> pairs table, spatial split, shards."""

from kedro.pipeline import Node, Pipeline

from .nodes import collect_pairs, extract_training_shards, plan_pairs, plot_pairing_map


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(plan_pairs, ["street_views", "sentinel2_tiles", "params:pair"],
                 ["pair_candidates", "pair_placement_rejects"], name="plan_pairs_node"),
            Node(extract_training_shards,
                 ["pair_candidates", "sentinel2_tiles", "sentinel2_raw", "streetscapes_raw",
                  "params:pair", "params:staging_dir"],
                 "training_shards", name="extract_training_shards_node"),
            Node(collect_pairs, ["training_shards", "street_views", "pair_placement_rejects"],
                 ["pairs", "pair_rejects", "pair_report"], name="collect_pairs_node"),
            Node(plot_pairing_map,
                 ["pairs", "sentinel2_tiles", "pair_rejects", "street_views", "params:pair"],
                 "pairing_map", name="plot_pairing_map_node"),
        ],
        tags="pair",
    )
