"""Pairing: the query coordinate convention proved with an oracle, and the spatial split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import rasterio
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


GAIR_DEGREES = 8.983152841195215e-05  # GAIR's EPSG:4326 tiles: 10 m at the equator
GEO_ROWS, GEO_COLS = 70, 80


def _geographic_tile(path, lat0: float, lon0: float, values: np.ndarray) -> Affine:
    """A 12-band EPSG:4326 tile at GAIR's pixel size, north-west corner (lat0, lon0)."""
    transform = Affine(GAIR_DEGREES, 0, lon0, 0, -GAIR_DEGREES, lat0)
    with rasterio.open(path, "w", driver="GTiff", width=values.shape[1], height=values.shape[0],
                       count=12, dtype="uint16", crs="EPSG:4326", transform=transform,
                       nodata=0) as dst:
        dst.write(np.broadcast_to(values.astype(np.uint16), (12, *values.shape)))
        dst.update_tags(PROCESSING_BASELINE="03.00")  # no offset: values read back as written
    return transform


@pytest.mark.parametrize(("lat0", "lon0"), [(0.0068, 9.0011), (60.003, 9.0011)],
                         ids=["equator", "60N"])
def test_query_coordinate_on_a_geographic_tile_samples_what_the_warp_put_there(
        tmp_path, lat0, lon0):
    """Oracle, from the definitions alone: the street view's UTM 10 m cell (zone of the tile,
    cells at multiples of 10 m) takes the value of the source pixel holding the cell's
    centre (nearest). ``grid_sample`` at (qx, qy) must return exactly that, for points all
    over the tile. Every source pixel holds its own value."""
    values = 1000 + np.arange(GEO_ROWS * GEO_COLS).reshape(GEO_ROWS, GEO_COLS)
    source = _geographic_tile(tmp_path / "gair.tif", lat0, lon0, values)
    tiles = read_tile_index(tmp_path).tiles
    tile = tiles.iloc[0]
    zone = 32600 + int((lon0 + 180) // 6) + 1
    assert tile["crs"] == f"EPSG:{zone}" and tile["source_crs"] == "EPSG:4326"
    west, north = tile["transform"][2], tile["transform"][5]
    assert west % 10 == 0 and north % 10 == 0
    rng = np.random.default_rng(0)
    lat = lat0 - GAIR_DEGREES * rng.uniform(1, GEO_ROWS - 1, 60)
    lon = lon0 + GAIR_DEGREES * rng.uniform(1, GEO_COLS - 1, 60)
    pairs = pair_points(lat, lon, tiles, PATCH, 1.0, {"train": 1.0}, 0)
    to_utm = Transformer.from_crs(4326, zone, always_xy=True)
    to_geo = Transformer.from_crs(zone, 4326, always_xy=True)
    for k, pair in pairs.iterrows():
        x, y = to_utm.transform(lon[k], lat[k])
        cell_x = west + 10 * (np.floor((x - west) / 10) + 0.5)
        cell_y = north - 10 * (np.floor((north - y) / 10) + 0.5)
        cell_lon, cell_lat = to_geo.transform(cell_x, cell_y)
        src_col, src_row = ~source @ (cell_lon, cell_lat)
        expected = values[int(np.floor(src_row)), int(np.floor(src_col))]
        assert _sample_at_query(tmp_path, tiles, pair, "nearest") == expected, k


@pytest.mark.parametrize(("lat0", "lon0"), [(0.0068, 9.0011), (60.003, 9.0011)],
                         ids=["equator", "60N"])
def test_marker_on_a_geographic_tile_is_sampled_at_the_street_view(tmp_path, lat0, lon0):
    """A 3 x 3 marker of source pixels (30 m, or 15 x 30 m at 60 N) around the view: the
    warped patch sampled at (qx, qy) reads the marker."""
    values = np.full((GEO_ROWS, GEO_COLS), BACKGROUND)
    row, col = 31, 47
    values[row - 1 : row + 2, col - 1 : col + 2] = MARKER
    source = _geographic_tile(tmp_path / "gair.tif", lat0, lon0, values)
    lon, lat = source @ (col + 0.5, row + 0.5)
    tiles = read_tile_index(tmp_path).tiles
    pair = pair_points(np.array([lat]), np.array([lon]), tiles, PATCH, 1.0,
                       {"train": 1.0}, 0).iloc[0]
    assert _sample_at_query(tmp_path, tiles, pair, "nearest") == MARKER


def _two_scenes(directory):
    """Two tiles over the same ground, sensed 2020-05-01 and 2024-05-01."""
    for name, when in (("a_2020.tif", "2020-05-01T10:00:00Z"), ("b_2024.tif", "2024-05-01T10:00:00Z")):
        dn = np.full((12, SIZE, SIZE), BACKGROUND, dtype=np.uint16)
        write_l2a_geotiff(directory / name, dn, CRS.from_epsg(32632),
                          Affine(10, 0, 500000.0, 0, -10, 5400000.0), "05.09",
                          tags={"SENSING_TIME": when})
    lon, lat = Transformer.from_crs(32632, 4326, always_xy=True).transform(500320.0, 5399680.0)
    return read_tile_index(directory).tiles, lat, lon


def test_max_days_apart_picks_the_scene_near_the_capture(tmp_path):
    tiles, lat, lon = _two_scenes(tmp_path)
    captured = np.array(["2023-11-20T08:00", "2020-03-01T08:00", "2010-01-01", "NaT"],
                        dtype="datetime64[ns]")
    lats, lons = np.full(4, lat), np.full(4, lon)
    free = pair_points(lats, lons, tiles, PATCH, 1.0, {"train": 1.0}, 0, captured)
    assert free["tile_id"].notna().all(), "without a limit, dates do not matter"
    sensed = pd.to_datetime(free["tile_id"].map(
        {"a_2020.tif": "2020-05-01T10:00", "b_2024.tif": "2024-05-01T10:00"})).to_numpy()
    expected = np.abs((captured - sensed) / np.timedelta64(1, "D"))
    np.testing.assert_allclose(free["scene_days_apart"], expected)
    limited = pair_points(lats, lons, tiles, PATCH, 1.0, {"train": 1.0}, 0, captured, 365)
    assert limited["tile_id"].fillna("-").tolist() == ["b_2024.tif", "a_2020.tif", "-", "-"]
    assert limited["scene_days_apart"].iloc[:2].round(2).tolist() == [163.08, 61.08]


def test_plan_pairs_rejects_views_far_from_every_scene_with_the_reason(tmp_path):
    from gair.parameters import PairParams
    from gair.pipelines.pair.nodes import plan_pairs

    tiles, lat, lon = _two_scenes(tmp_path)
    views = pd.DataFrame({
        "uuid": ["near", "old", "undated", "away"], "lat": [lat, lat, lat, lat + 1],
        "lon": [lon] * 4, "image_path": ["x.jpeg"] * 4,
        "datetime_utc": pd.to_datetime(["2024-06-01", "2010-01-01", None, "2024-06-01"],
                                       utc=True)})
    params = PairParams(patch_size_px=PATCH, max_days_apart=90,
                        split={"fractions": {"train": 1.0}, "block_km": 1.0})
    candidates, rejects = plan_pairs(views, tiles, params)
    assert candidates["uuid"].tolist() == ["near"]
    near = candidates.iloc[0]
    assert near["tile_id"] == "b_2024.tif"
    assert str(near["scene_time"]) == "2024-05-01 10:00:00+00:00"
    assert str(near["capture_time"]) == "2024-06-01 00:00:00+00:00"
    assert near["scene_days_apart"] == pytest.approx(30.58, abs=0.01)
    reasons = dict(zip(rejects["item"], rejects["reason"], strict=True))
    assert reasons == {"old": "scene too far from capture", "undated": "scene too far from capture",
                       "away": "outside every tile"}
    details = dict(zip(rejects["item"], rejects["detail"], strict=True))
    assert "captured 2010-01-01" in details["old"] and "max_days_apart is 90" in details["old"]
    assert "captured unknown" in details["undated"] and "date unknown" in details["undated"]
    # Without the limit every view inside a tile is placed, its days apart recorded.
    unlimited, _ = plan_pairs(views, tiles, params.model_copy(update={"max_days_apart": None}))
    assert unlimited["uuid"].tolist() == ["near", "old", "undated"]
    assert np.isnan(unlimited["scene_days_apart"].iloc[2])
