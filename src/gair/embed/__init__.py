"""Use a trained GAIR: load it from its checkpoint alone and embed your own locations,
street views and Sentinel-2 patches (library code, no Kedro; ``python -m gair.embed``).

    model = gair.load_model("data/06_models/gair.ckpt")  # or a save_pretrained folder,
                                                          # or the official GAIR release
    points = gair.embed.embed_locations(model, gair.embed.read_location_table("points.csv"))
    gair.embed.write_geoparquet(points, "points_embedded.parquet")
"""

from gair.embed.api import (
    embed_locations,
    embed_rs_at_points,
    embed_rs_patches,
    embed_rs_patches_with_rejects,
    embed_street_views,
    embed_street_views_with_rejects,
    read_location_table,
    write_geoparquet,
)
from gair.embed.model import FrozenGAIR, load_model, random_like, save_pretrained

__all__ = ["FrozenGAIR", "embed_locations", "embed_rs_at_points", "embed_rs_patches",
           "embed_rs_patches_with_rejects", "embed_street_views",
           "embed_street_views_with_rejects", "load_model", "random_like",
           "read_location_table", "save_pretrained", "write_geoparquet"]
