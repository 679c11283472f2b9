"""``embed`` pipeline: a trained checkpoint + a points table -> embeddings (GeoParquet).

Not in ``__default__``: point ``embed_points`` at your own table (a Kedro environment or
``conf/local``) and run ``kedro run --pipelines embed``.
"""

from kedro.pipeline import Node, Pipeline

from .nodes import embed_points


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(embed_points, ["gair_checkpoint", "embed_points", "sentinel2_raw",
                                "sentinel2_tiles", "params:embed"],
                 "point_embeddings", name="embed_points_node"),
        ],
        tags="embed",
    )
