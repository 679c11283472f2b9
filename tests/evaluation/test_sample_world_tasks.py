"""Task tables from the sample world's truth, in the pairing step's spatial split."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import shapely

from gair.evaluation.sample_world_tasks import (
    SpatialSplit,
    location_gallery,
    patch_masks,
    read_truth,
    sample_patches,
    sample_points,
)
from gair.geo.distance import haversine_km
from gair.geo.pairing import TileGrid, pair_points
from gair.io.sentinel2 import read_tile_index

FRACTIONS = {"train": 0.6, "val": 0.2, "test": 0.2}


@pytest.fixture(scope="module")
def world(small_world):
    tiles = read_tile_index(small_world["sentinel2"]).tiles
    truth = pd.read_csv(small_world["truth"] / "street_views.csv")
    inside = truth[truth["inside_tile"]]
    metadata = pd.read_csv(small_world["streetscapes"] / "metadata_common_attributes.csv")
    views = inside.merge(metadata[["uuid", "lat", "lon"]], on="uuid")
    pairs = pair_points(views["lat"].to_numpy(), views["lon"].to_numpy(), tiles, 32, 0.5,
                        FRACTIONS, seed=3)
    split = SpatialSplit.of_pairs(pairs, 0.5, FRACTIONS, seed=3, patch_size=32)
    return tiles, small_world["truth"], pairs, split


def test_blocks_with_street_views_keep_the_pairing_split(world):
    _, _, pairs, split = world
    np.testing.assert_array_equal(split.of_blocks(pairs["block"].to_numpy(np.int64)),
                                  pairs["split"].to_numpy())
    unseen = np.array([123456789, 987654321], dtype=np.int64)
    assert set(split.of_blocks(unseen)) <= set(FRACTIONS)
    np.testing.assert_array_equal(split.of_blocks(unseen), split.of_blocks(unseen[::-1])[::-1])


def test_a_block_without_street_views_has_one_split_however_it_is_asked(world):
    _, _, pairs, split = world
    unseen = np.arange(1, 201, dtype=np.int64) * 7919 + (5 << 52)
    assert not set(unseen) & set(pairs["block"].astype("int64"))
    together = split.of_blocks(unseen)
    alone = np.array([split.of_blocks(unseen[i : i + 1])[0] for i in range(len(unseen))])
    np.testing.assert_array_equal(together, alone)
    np.testing.assert_array_equal(split.of_blocks(unseen[:5]), together[:5])
    shares = pd.Series(together).value_counts(normalize=True)
    assert all(abs(shares[name] - f) < 0.1 for name, f in FRACTIONS.items())


def test_patches_never_straddle_splits_and_carry_their_dominant_class(world):
    tiles, truth_dir, _, split = world
    patches, counts = sample_patches(tiles, truth_dir, split, patch_size=32, stride=16)
    assert counts["kept"] + counts["left_out_straddling_splits"] + counts[
        "left_out_overlapping_other_split_pairs"] == counts["candidates"]
    assert counts["kept"] == len(patches) > 0
    assert set(patches["split"]) == set(FRACTIONS)
    grid = TileGrid.from_index(tiles)
    index = {t: i for i, t in enumerate(grid.tile_ids)}
    for row in patches.sample(20, random_state=0).itertuples():
        t = np.full(32 * 32, index[row.tile_id])
        r, c = np.mgrid[0:32, 0:32]
        pixel_splits = split.of_points(grid, t, c.ravel() + row.col_off + 0.5,
                                       r.ravel() + row.row_off + 0.5)
        assert set(pixel_splits) == {row.split}, "every pixel of a patch is in its split"
    # No kept patch shares a pixel with a pairing patch (what pretraining saw) of another split.
    footprints = split.footprints
    for row in patches.itertuples():
        others = footprints[(footprints["tile_id"] == row.tile_id)
                            & (footprints["split"] != row.split)]
        apart = ((others["row_off"] >= row.row_off + 32) | (others["row_off"] + 32 <= row.row_off)
                 | (others["col_off"] >= row.col_off + 32) | (others["col_off"] + 32 <= row.col_off))
        assert apart.all()
    # A pairing patch of another split laid over a kept patch pushes it out.
    kept = patches.iloc[0]
    other = next(name for name in FRACTIONS if name != kept["split"])
    footprint = pd.DataFrame({"tile_id": [kept["tile_id"]], "row_off": [kept["row_off"] + 8],
                              "col_off": [kept["col_off"] + 8], "split": [other]})
    covered = replace(split, footprints=pd.concat([footprints, footprint], ignore_index=True))
    fewer, fewer_counts = sample_patches(tiles, truth_dir, covered, patch_size=32, stride=16)
    assert fewer_counts["left_out_overlapping_other_split_pairs"] > counts[
        "left_out_overlapping_other_split_pairs"]
    assert not ((fewer["tile_id"] == kept["tile_id"]) & (fewer["row_off"] == kept["row_off"])
                & (fewer["col_off"] == kept["col_off"])).any()
    masks = patch_masks(patches, truth_dir, 32)
    first = patches.iloc[0]
    whole = read_truth(truth_dir, "landcover", first["tile_id"])
    np.testing.assert_array_equal(masks[0], whole[first["row_off"]:first["row_off"] + 32,
                                                  first["col_off"]:first["col_off"] + 32])
    assert all(np.bincount(m.ravel()).argmax() == c for m, c in zip(masks, patches["landcover"],
                                                                   strict=True))


def test_points_lie_in_their_tile_with_the_truth_under_them(world):
    tiles, truth_dir, _, split = world
    points = sample_points(tiles, truth_dir, split, per_tile=200, seed=0)
    assert len(points) == 200 * len(tiles) and set(points["split"]) <= set(FRACTIONS)
    footprints = dict(zip(tiles["tile_id"], tiles.geometry, strict=True))
    assert all(shapely.contains(footprints[t], p).item() or
               footprints[t].distance(p) < 1e-6
               for t, p in zip(points["tile_id"], points.geometry, strict=True))
    assert set(points["landcover"]) <= set(range(1, 9))
    again = sample_points(tiles, truth_dir, split, per_tile=200, seed=0)
    pd.testing.assert_frame_equal(points, again)


def test_gallery_is_a_regular_grid_over_every_tile(world):
    tiles, *_ = world
    gallery = location_gallery(tiles, spacing_m=160.0)
    assert len(gallery) == len(tiles) * 8 * 8  # 1,280 m tiles at 160 m
    first_row = gallery[:8]
    steps = haversine_km(first_row[:-1, 0], first_row[:-1, 1], first_row[1:, 0], first_row[1:, 1])
    np.testing.assert_allclose(steps, 0.16, rtol=0.01)
