"""``sample_world`` pipeline: params -> world layout -> raw folders + hidden truth."""

from kedro.pipeline import Node, Pipeline

from .nodes import build_sample_world, write_sentinel2_tiles, write_streetscapes, write_truth


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(build_sample_world, "params:sample_world", "sample_world_layout",
                 name="build_sample_world_node"),
            # Each builds its folder under params:staging_dir; the catalog moves it in.
            Node(write_sentinel2_tiles, ["sample_world_layout", "params:staging_dir"],
                 "sentinel2_raw", name="write_sentinel2_tiles_node"),
            Node(write_streetscapes, ["sample_world_layout", "params:staging_dir"],
                 "streetscapes_raw", name="write_streetscapes_node"),
            Node(write_truth, ["sample_world_layout", "params:staging_dir"],
                 "sample_world_truth", name="write_truth_node"),
        ],
        tags="sample_world",
    )
