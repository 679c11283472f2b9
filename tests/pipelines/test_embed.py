"""The embedding API, its command line and the `embed` pipeline on the small world's run."""

from __future__ import annotations

import subprocess
import sys

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio

import gair
from gair.embed import embed_locations, embed_rs_at_points, embed_rs_patches, embed_street_views
from gair.evaluation.embeddings import stack
from gair.evaluation.suite import ModelEmbeddings
from gair.io.l2a import L2A_BANDS
from gair.io.sentinel2 import TileRejected


@pytest.fixture(scope="module")
def model(pretrained):
    return gair.load_model(pretrained / "06_models" / "gair.ckpt")


@pytest.mark.slow
def test_api_embeddings_equal_the_evaluation_pipelines(evaluated, model):
    pairs = ModelEmbeddings.read(evaluated / "07_model_output" / "embeddings" / "gair_s0").pairs
    api = embed_rs_at_points(model, pairs[["lat", "lon"]],
                             evaluated / "01_raw" / "sample" / "sentinel2",
                             processing_baseline="05.09")
    assert api["patch_id"].tolist() == pairs["patch_id"].tolist()
    np.testing.assert_allclose(api[["qx", "qy"]].to_numpy(), pairs[["qx", "qy"]].to_numpy(),
                               atol=1e-9)
    for column in ("rs_global", "rs_query", "location"):
        np.testing.assert_allclose(stack(api, column), stack(pairs, column), atol=1e-5)
    located = embed_locations(model, pairs[["lat", "lon"]])
    np.testing.assert_allclose(stack(located, "location"), stack(pairs, "location"), atol=1e-6)
    assert located.crs.to_epsg() == 4326


@pytest.mark.slow
def test_points_outside_every_tile_keep_their_row(pretrained, model):
    table = pd.DataFrame({"lat": [0.0, 48.7], "lon": [0.0, 9.1]})  # the Gulf of Guinea
    result = embed_rs_at_points(model, table, pretrained / "01_raw" / "sample" / "sentinel2")
    assert len(result) == 2 and result["tile_id"].isna().all()
    assert result["rs_query"].isna().all() and result["location"].notna().all()


@pytest.mark.slow
def test_street_views_and_rs_patch_files(pretrained, model, tmp_path):
    raw = pretrained / "01_raw" / "sample"
    images = sorted((raw / "streetscapes" / "images").rglob("*.jpeg"))[:3]
    svs = embed_street_views(model, images, batch_size=2)
    assert len(svs) == 3
    np.testing.assert_allclose(np.linalg.norm(stack(svs, "sv"), axis=1), 1.0, atol=1e-5)
    tiles = sorted((pretrained / "01_raw" / "sample" / "sentinel2").glob("*.tif"))
    patches = embed_rs_patches(model, tiles[:2], boa_add_offset=-1000)
    assert len(patches) == 2 and patches.crs.to_epsg() == 4326
    assert stack(patches, "rs_global").shape == (2, model.model.rs_encoder.embed_dim)

    with rasterio.open(tiles[0]) as src:
        profile, dn = src.profile, src.read()
    reflectance = tmp_path / "reflectance.tif"
    with rasterio.open(reflectance, "w", **(profile | {"dtype": "float32"})) as dst:
        dst.write((dn.astype(np.float32) - 1000) / 10000)
    with pytest.raises(TileRejected, match=r"not uint16 digital numbers: .*dtype float32; "
                                           r"reflectance\?"):
        embed_rs_patches(model, [reflectance])
    with pytest.raises(TileRejected, match=r"wrong band count: .*12 bands, expected 13"):
        embed_rs_patches(model, tiles[:1], band_order=[*L2A_BANDS, "B10"])


@pytest.mark.slow
def test_command_line(pretrained, tmp_path):
    checkpoint = str(pretrained / "06_models" / "gair.ckpt")
    points = tmp_path / "points.csv"
    pd.DataFrame({"lat": [48.78, 1.35], "lon": [9.18, 103.82]}).to_csv(points, index=False)
    out = tmp_path / "out.parquet"
    subprocess.run([sys.executable, "-m", "gair.embed", "locations", "--checkpoint", checkpoint,
                    "--input", str(points), "--output", str(out)], check=True)
    assert len(gpd.read_parquet(out)) == 2
    swapped = tmp_path / "swapped.csv"
    pd.DataFrame({"lat": [9.18, 103.82], "lon": [48.78, 1.35]}).to_csv(swapped, index=False)
    result = subprocess.run([sys.executable, "-m", "gair.embed", "locations", "--checkpoint",
                             checkpoint, "--input", str(swapped), "--output",
                             str(tmp_path / "bad.parquet")], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 2 and "(lon, lat) given" in result.stderr
    assert not (tmp_path / "bad.parquet").exists()


@pytest.mark.slow
def test_embed_pipeline_output(embedded):
    points = gpd.read_parquet(embedded / "07_model_output" / "point_embeddings.parquet")
    metadata = pd.read_csv(embedded / "01_raw" / "sample" / "streetscapes" /
                           "metadata_common_attributes.csv")
    assert len(points) == len(metadata) and points["uuid"].tolist() == metadata["uuid"].tolist()
    inside = points["tile_id"].notna()
    assert inside.sum() == len(metadata) - 2  # the small world puts 2 views outside every tile
    assert points.loc[inside, "rs_query"].notna().all()
