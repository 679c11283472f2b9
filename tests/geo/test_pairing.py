"""Pairing: the query coordinate convention proved with an oracle, and the spatial split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from affine import Affine
from pyproj import CRS, Transformer
from rasterio.windows import Window

from gair.geo.pairing import assign_splits, pair_points
from gair.io.sentinel2 import read_tile_index, read_window, to_reflectance, write_l2a_geotiff

BACKGROUND, MARKER = 2000, 9000
SIZE, PATCH = 64, 24


def _tile_with_marker(path, crs: CRS, west: float, north: float, row: float, col: float):
    """A tile whose only bright pixel is the one holding fractional position (row, col)."""
    dn = np.full((12, SIZE, SIZE), BACKGROUND, dtype=np.uint16)
    dn[:, int(row), int(col)] = MARKER
    write_l2a_geotiff(path, dn, crs, Affine(10, 0, west, 0, -10, north), "05.09", block_size=32)
    x, y = west + 10 * col, north - 10 * row
    lon, lat = Transformer.from_crs(crs, 4326, always_xy=True).transform(x, y)
    return lat, lon


def _sample_at_query(directory, tiles, pair, mode: str) -> float:
    """Read the pair's patch and sample it at (qx, qy) as the model's NILI will."""
    tile = tiles.set_index("tile_id").loc[pair["tile_id"]].to_dict()
    dn = read_window(directory, tile, Window(int(pair["col_off"]), int(pair["row_off"]), PATCH, PATCH))
    reflectance, _ = to_reflectance(dn, tile["boa_add_offset"])
    image = torch.from_numpy(reflectance.astype(np.float32))[None]
    grid = torch.tensor([[[[pair["qx"], pair["qy"]]]]], dtype=torch.float32)
    sampled = torch.nn.functional.grid_sample(image, grid, mode=mode, align_corners=False)
    return float(sampled[0, 0, 0, 0])


POSITIONS = [(10.3, 20.8), (0.05, 0.05), (23.99, 24.01), (47.5, 63.9), (63.9, 1.2), (30.5, 30.5)]


@pytest.mark.parametrize(
    ("epsg", "west", "north"),
    [(32632, 500000.0, 5400000.0),  # northern hemisphere
     (32723, 330000.0, 7395000.0),  # southern hemisphere (false northing 10,000 km)
     (32660, 700000.0, 1000000.0)],  # near the antimeridian
)
@pytest.mark.parametrize(("row", "col"), POSITIONS)
def test_query_coordinate_samples_the_street_view_pixel(tmp_path, epsg, west, north, row, col):
    lat, lon = _tile_with_marker(tmp_path / "t.tif", CRS.from_epsg(epsg), west, north, row, col)
    tiles = read_tile_index(tmp_path).tiles
    pair = pair_points(np.array([lat]), np.array([lon]), tiles, PATCH, 1.0,
                       {"train": 1.0}, 0).iloc[0]
    assert -1 <= pair["qx"] <= 1 and -1 <= pair["qy"] <= 1
    assert pair["col_off"] + PATCH <= SIZE and pair["row_off"] + PATCH <= SIZE
    assert _sample_at_query(tmp_path, tiles, pair, "nearest") == MARKER - 1000
    assert pair["row"] == pytest.approx(row, abs=1e-6) and pair["col"] == pytest.approx(col, abs=1e-6)


def test_pixel_centre_is_where_bilinear_sampling_reads_the_pixel_alone(tmp_path):
    lat, lon = _tile_with_marker(tmp_path / "t.tif", CRS.from_epsg(32632), 500000.0, 5400000.0,
                                 5.5, 7.5)
    tiles = read_tile_index(tmp_path).tiles
    pair = pair_points(np.array([lat]), np.array([lon]), tiles, PATCH, 1.0, {"train": 1}, 0).iloc[0]
    assert (pair["qx"], pair["qy"]) == pytest.approx((2 * 7.5 / PATCH - 1, 2 * 5.5 / PATCH - 1))
    assert _sample_at_query(tmp_path, tiles, pair, "bilinear") == pytest.approx(MARKER - 1000)


def test_across_a_utm_zone_boundary(tmp_path):
    """A point just east of 12 E lies in a zone-32 tile and a zone-33 tile; both work."""
    lat, lon = 48.0, 12.0005
    placements = {}
    for epsg in (32632, 32633):
        crs = CRS.from_epsg(epsg)
        x, y = Transformer.from_crs(4326, crs, always_xy=True).transform(lon, lat)
        # zone 33's tile is centred on the point; zone 32's has it 3 pixels from its east edge
        west = x - (SIZE / 2 if epsg == 32633 else SIZE - 3) * 10
        west, north = np.floor(west / 10) * 10, np.floor((y + SIZE / 2 * 10) / 10) * 10
        row, col = (north - y) / 10, (x - west) / 10
        folder = tmp_path / str(epsg)
        folder.mkdir()
        _tile_with_marker(folder / f"zone{epsg}.tif", crs, west, north, row, col)
        placements[epsg] = folder
    both = tmp_path / "both"
    both.mkdir()
    for folder in placements.values():
        for path in folder.iterdir():
            (both / path.name).write_bytes(path.read_bytes())
    for directory, expected in ((both, "zone32633.tif"), (placements[32632], "zone32632.tif")):
        tiles = read_tile_index(directory).tiles
        assert len(tiles) == (2 if directory == both else 1)
        pair = pair_points(np.array([lat]), np.array([lon]), tiles, PATCH, 1.0,
                           {"train": 1}, 0).iloc[0]
        assert pair["tile_id"] == expected, "the tile holding the point farthest from an edge"
        assert _sample_at_query(directory, tiles, pair, "nearest") == MARKER - 1000


def test_points_outside_every_tile_are_not_placed(tmp_path):
    lat, lon = _tile_with_marker(tmp_path / "t.tif", CRS.from_epsg(32632), 500000.0, 5400000.0,
                                 1.0, 1.0)
    tiles = read_tile_index(tmp_path).tiles
    far = pair_points(np.array([lat, lat + 1.0, lat]), np.array([lon, lon, lon - 0.0003]),
                      tiles, PATCH, 1.0, {"train": 1}, 0)
    assert far["tile_id"].notna().tolist() == [True, False, False]
    assert far.loc[1:, "split"].isna().all()


def test_split_is_deterministic_by_block_and_order_free():
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 400, 5000)
    fractions = {"train": 0.7, "val": 0.15, "test": 0.15}
    splits = assign_splits(blocks, fractions, seed=3)
    order = rng.permutation(len(blocks))
    again = assign_splits(blocks[order], fractions, seed=3)
    assert (again == splits[order]).all()
    table = pd.DataFrame({"block": blocks, "split": splits})
    assert table.groupby("block")["split"].nunique().max() == 1
    shares = table["split"].value_counts(normalize=True)
    for code, share in enumerate(fractions.values()):
        assert shares[code] == pytest.approx(share, abs=0.04)
    assert (assign_splits(blocks, fractions, seed=4) != splits).any()


def test_no_patch_or_block_in_two_splits_on_the_sample_world(small_world):
    from gair.io.streetscapes import read_street_views

    points = read_street_views(small_world["streetscapes"]).points
    tiles = read_tile_index(small_world["sentinel2"]).tiles
    pairs = pair_points(points["lat"].to_numpy(), points["lon"].to_numpy(), tiles, 32, 0.4,
                        {"train": 0.6, "val": 0.2, "test": 0.2}, 0).dropna(subset=["tile_id"])
    assert pairs.groupby("patch_id")["split"].nunique().max() == 1
    assert pairs.groupby("block")["split"].nunique().max() == 1
    assert set(pairs["split"]) == {"train", "val", "test"}
    assert pairs.groupby("patch_id").size().max() >= 2, "several views share a patch"
    centred = (pairs["qx"].abs() < 0.05) & (pairs["qy"].abs() < 0.05)
    assert centred.mean() < 0.5, "views lie anywhere in their patch, not at its centre"


def test_tiles_differing_only_in_suffix_keep_their_own_pixels(tmp_path):
    """dup.tif (Nairobi) and dup.tiff (Singapore) are two tiles: each view reads the one
    that holds it."""
    nairobi = _tile_with_marker(tmp_path / "dup.tif", CRS.from_epsg(32737), 250000.0,
                                9860000.0, 10.5, 20.5)
    singapore = _tile_with_marker(tmp_path / "dup.tiff", CRS.from_epsg(32648), 370000.0,
                                  150000.0, 40.5, 5.5)
    tiles = read_tile_index(tmp_path).tiles
    assert sorted(tiles["tile_id"]) == ["dup.tif", "dup.tiff"]
    lat, lon = np.array([nairobi, singapore]).T
    pairs = pair_points(lat, lon, tiles, PATCH, 1.0, {"train": 1.0}, 0)
    assert pairs["tile_id"].tolist() == ["dup.tif", "dup.tiff"]
    for _, pair in pairs.iterrows():
        assert _sample_at_query(tmp_path, tiles, pair, "nearest") == MARKER - 1000


def _utm_outline(tiles: pd.DataFrame, pairs: pd.DataFrame, size: int):
    """Patch outlines in EPSG:32632 computed here from the tile transforms (the oracle)."""
    from shapely.geometry import Polygon

    outlines = []
    by_id = tiles.set_index("tile_id")
    for tile_id, row_off, col_off in pairs[["tile_id", "row_off", "col_off"]].itertuples(
            index=False):
        tile = by_id.loc[tile_id]
        a, _, c, _, e, f = tile["transform"]
        to_32 = Transformer.from_crs(tile["crs"], 32632, always_xy=True)
        corners = [(c + a * (col_off + dc), f + e * (row_off + dr))
                   for dc, dr in ((0, 0), (size, 0), (size, size), (0, size))]
        outlines.append(Polygon([to_32.transform(x, y) for x, y in corners]))
    return outlines


ZONE_FRACTIONS = {"train": 0.6, "val": 0.2, "test": 0.2}


def _overlapping_zone_tiles(directory, size: int = 400):
    """Two 4 km tiles at 12 E, one in zone 32 and one in zone 33, overlapping by 2 km, and
    3000 views all over them."""
    lat0, lon0 = 48.0, 12.0
    directory.mkdir(exist_ok=True)
    for epsg, shift in ((32632, -3000.0), (32633, -1000.0)):
        crs = CRS.from_epsg(epsg)
        x, y = Transformer.from_crs(4326, crs, always_xy=True).transform(lon0, lat0)
        west, north = np.floor((x + shift) / 10) * 10, np.floor((y + 2000) / 10) * 10
        dn = np.full((12, size, size), BACKGROUND, dtype=np.uint16)
        write_l2a_geotiff(directory / f"zone{epsg}.tif", dn, crs,
                          Affine(10, 0, west, 0, -10, north), "05.09")
    rng = np.random.default_rng(0)
    return (read_tile_index(directory).tiles, lat0 + rng.uniform(-0.017, 0.017, 3000),
            lon0 + rng.uniform(-0.035, 0.035, 3000))


def test_no_ground_in_two_splits_where_tiles_overlap_across_utm_zones(tmp_path):
    """No two used patches of different splits share ground, and the views of patches
    that would have are rejected with the patch they overlap, not dropped."""
    patch = 24
    tiles, lat, lon = _overlapping_zone_tiles(tmp_path)
    pairs = pair_points(lat, lon, tiles, patch, 0.5, ZONE_FRACTIONS, 0).dropna(subset=["tile_id"])
    assert set(pairs["tile_id"]) == {"zone32632.tif", "zone32633.tif"}
    used = pairs[pairs["overlaps"].isna()]
    assert 0 < len(pairs) - len(used) < 0.2 * len(pairs)
    assert _ground_in_two_splits(tiles, pairs, patch) > 0, "the setup has overlaps to resolve"
    assert _ground_in_two_splits(tiles, used, patch) == 0
    assert used.groupby("block")["split"].nunique().max() == 1
    # A rejected view's patch really overlaps the named patch of a more protected split.
    yielded = pairs[pairs["overlaps"].notna()].drop_duplicates("patch_id")
    assert set(yielded["split"]) <= {"train", "val"}
    patches = pairs.drop_duplicates("patch_id").set_index("patch_id", drop=False)
    for patch_id, other in yielded[["patch_id", "overlaps"]].head(20).itertuples(index=False):
        other_id, other_split = other.removesuffix(")").rsplit(" (", 1)
        assert other_split == patches.at[other_id, "split"]
        assert _ground_in_two_splits(tiles, patches.loc[[patch_id, other_id]], patch) == 1


def _ground_in_two_splits(tiles: pd.DataFrame, pairs: pd.DataFrame, size: int) -> int:
    """Pairs of patches in different splits sharing more than 0.1 % of their ground."""
    import shapely

    patches = pairs.drop_duplicates("patch_id").reset_index(drop=True)
    outlines = np.array(_utm_outline(tiles, patches, size))
    i, j = shapely.STRtree(outlines).query(outlines, predicate="intersects")
    split = patches["split"].to_numpy()
    candidates = (i < j) & (split[i] != split[j])
    i, j = i[candidates], j[candidates]
    shared = shapely.area(shapely.intersection(outlines[i], outlines[j]))
    return int((shared > 0.001 * shapely.area(outlines[i])).sum())


def test_evaluation_patches_follow_the_same_rule_across_tiles(tmp_path):
    """The evaluation's RS patches leave out ground a pairing patch of another split
    covers, whichever tile (and UTM zone) either is of."""
    import rasterio

    from gair.evaluation.sample_world_tasks import SpatialSplit, sample_patches

    patch = 24
    tiles, lat, lon = _overlapping_zone_tiles(tmp_path / "tiles")
    pairs = pair_points(lat, lon, tiles, patch, 0.5, ZONE_FRACTIONS, 0).dropna(subset=["tile_id"])
    used = pairs[pairs["overlaps"].isna()]
    for tile_id, width, height in tiles[["tile_id", "width", "height"]].itertuples(index=False):
        path = tmp_path / "truth" / "landcover" / tile_id
        path.parent.mkdir(parents=True, exist_ok=True)
        with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=1,
                           dtype="uint8") as dst:
            dst.write(np.ones((1, height, width), np.uint8))
    split = SpatialSplit.of_pairs(used, 0.5, ZONE_FRACTIONS, 0, patch)
    evaluation, counts = sample_patches(tiles, tmp_path / "truth", split, patch, patch)
    assert counts["left_out_overlapping_other_split_pairs"] > 0
    evaluation["patch_id"] = [f"eval-{i}" for i in range(len(evaluation))]
    both = pd.concat([used.drop_duplicates("patch_id"), pd.DataFrame(evaluation)],
                     ignore_index=True)
    within_evaluation = _ground_in_two_splits(tiles, pd.DataFrame(evaluation), patch)
    assert _ground_in_two_splits(tiles, both, patch) == within_evaluation
