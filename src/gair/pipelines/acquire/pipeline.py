"""``acquire`` pipeline: street views -> Sentinel-2 L2A tiles from a STAC API.

Not in ``__default__`` (it needs the network). It starts from the raw street views (ingest's
street-view node, so it runs before there is any tile for ingest to index): run
``kedro run --pipelines acquire`` with ``sentinel2_dir`` pointing at a real-data folder,
then ``kedro run --pipelines ingest,pair``. The tiles are written straight into that
folder (one file at a time, atomically) rather than through a catalog dataset: the folder
may hold the user's own tiles, and a rerun adds only what is missing.
"""

from kedro.pipeline import Node, Pipeline

from gair.pipelines.ingest.pipeline import create_pipeline as create_ingest_pipeline

from .nodes import acquire_tiles


def create_pipeline(**kwargs) -> Pipeline:
    street_views = create_ingest_pipeline().only_nodes("ingest_street_views_node")
    return street_views + Pipeline(
        [
            Node(acquire_tiles, ["street_views", "params:acquire"],
                 ["acquire_tiles", "acquire_rejects", "acquire_report"],
                 name="acquire_tiles_node"),
        ],
        tags="acquire",
    )
