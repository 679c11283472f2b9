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
    for directory, expected in ((both, "zone32633"), (placements[32632], "zone32632")):
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
