"""``ingest`` pipeline: Global Streetscapes + Sentinel-2 folders -> validated tables."""

from kedro.pipeline import Node, Pipeline

from .nodes import index_sentinel2_tiles, ingest_street_views, report_ingest


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(ingest_street_views, ["streetscapes_raw", "params:ingest.streetscapes"],
                 ["street_views", "street_view_rejects", "street_view_counts"],
                 name="ingest_street_views_node"),
            Node(index_sentinel2_tiles, ["sentinel2_raw", "params:ingest.sentinel2"],
                 ["sentinel2_tiles", "sentinel2_tile_rejects", "sentinel2_tile_counts"],
                 name="index_sentinel2_tiles_node"),
            Node(report_ingest,
                 ["street_view_counts", "sentinel2_tile_counts", "street_view_rejects",
                  "sentinel2_tile_rejects"],
                 ["ingest_report", "ingest_rejects"], name="report_ingest_node"),
        ],
        tags="ingest",
    )
