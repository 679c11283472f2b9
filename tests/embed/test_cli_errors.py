"""Hostile input to the embedding API and command line: strict tables, one-line errors,
bad files skipped and listed, images and tiles checked as ingest checks them."""

from __future__ import annotations

import argparse

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import rasterio
import rasterio.warp
import torch
from affine import Affine
from PIL import Image
from rasterio.transform import from_origin

from gair.contract import CONTRACT_KEY, ContractError, PreprocessingContract
from gair.embed import (
    FrozenGAIR,
    embed_locations,
    embed_rs_at_points,
    embed_rs_patches,
    load_model,
    save_pretrained,
)
from gair.embed.__main__ import main, rejects_path
from gair.embed.api import embed_street_views
from gair.evaluation.embeddings import stack
from gair.io.images import ImageRejected
from gair.io.l2a import L2A_BANDS
from gair.io.rejects import InputConfigurationError
from gair.io.sentinel2 import TileRejected, read_tile_index
from gair.model import GAIR, GAIRConfig
from tests.training.conftest import TINY_MODEL


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny random GAIR saved both ways: a save_pretrained folder and a training-style
    checkpoint (model weights do not matter for input handling)."""
    root = tmp_path_factory.mktemp("tiny")
    config = GAIRConfig.from_saved(TINY_MODEL)
    torch.manual_seed(0)
    model = GAIR(config).eval()
    contract = PreprocessingContract.for_training([1500.0] * 10, [500.0] * 10, 32, TINY_MODEL)
    frozen = FrozenGAIR(model, contract, {"model": config.architecture()}, torch.device("cpu"))
    save_pretrained(frozen, root / "folder")
    torch.save({CONTRACT_KEY: contract.to_dict(), "hyper_parameters": {"model": config.architecture()},
                "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}},
               root / "gair.ckpt")
    return frozen, root


def _cli(capsys, *args: str) -> tuple[int, str]:
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


def _one_error_line(err: str, file) -> str:
    """The error line, asserting it is the only one, names ``file`` and no traceback came."""
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    assert errors[0].startswith(f"error: {file}: "), errors[0]
    return errors[0]


# --- 1. location tables are read strictly ---------------------------------------------------

@pytest.mark.parametrize(("content", "message"), [
    ("lat,lon\n48.7,9.1,5\n", "row 1 (line 2): 3 fields where the header names 2"),
    ("lat,lon\n48.7,9.1\n1.3,103.8,12\n", "row 2 (line 3): 3 fields"),
    ("48.7,9.1\n1.3,103.8\n", "no header: the first line (48.7,9.1) holds values"),
    ("lat,lon\n48,7,9,1\n", "4 fields where the header names 2 (lat,lon) (a decimal comma"),
    ('lat,lon\n"48,7","9,1"\n', "row 1 (line 2): lat '48,7' has a decimal comma: write 48.7"),
    ("lat;lon\n48.7;9.1\n", "lacks column(s) lat, lon (lat, lon in degrees) (columns must be "
                            "separated by commas)"),
    ("", "empty file"),
    ("\n\n", "empty file"),
    ("lat,lon\n", "no data rows (only a header)"),
    ("lat,lon\nabc,9.1\n", "row 1 (line 2): lat 'abc' is not a number"),
    ("lat,lon\n48.7,\n", "row 1 (line 2): lon is empty"),
    ("lat,lon\nnan,9.1\n", "lat 'nan' is not a number"),
    ("lat,lon\n48.7,9.1\n95,9.1\n", "row 2 (line 3): lat 95 outside [-90, 90] (were (lon, lat)"),
    ("lat,lon\n48.7,190\n", "row 1 (line 2): lon 190 outside [-180, 180]"),
    ("lat,lon\n1,1\n95,1\n96,1\n", "row 2 (line 3): lat 95 outside [-90, 90] (were (lon, lat) "
                                   "given?) (and 1 more bad row(s))"),
    (",lat,lon\n0,48.7,9.1\n", "column(s) [1] have no name (a table written with its index?"),
    ("lat,lat,lon\n1,2,3\n", "column(s) ['lat'] named twice"),
    ("latitude,longitude\n48.7,9.1\n", "lacks column(s) lat, lon"),
    ('lat,lon\n"48.7,9.1\n', "line 2: unexpected end of data"),
])
def test_location_tables_are_read_strictly(tiny, tmp_path, capsys, content, message):
    table = tmp_path / "points.csv"
    table.write_text(content)
    out = tmp_path / "out.parquet"
    code, err = _cli(capsys, "locations", "--checkpoint", tiny[1] / "folder", "--input", table,
                     "--output", out)
    assert code == 2 and message in _one_error_line(err, table)
    assert not out.exists()


def test_a_table_not_in_utf8_is_an_error(tiny, tmp_path, capsys):
    table = tmp_path / "points.csv"
    table.write_bytes("lat,lon,name\n48.7,9.1,Stra\u00dfe\n".encode("latin-1"))
    code, err = _cli(capsys, "locations", "--checkpoint", tiny[1] / "folder", "--input", table,
                     "--output", tmp_path / "out.parquet")
    assert code == 2 and "not UTF-8 text" in _one_error_line(err, table)


def test_a_strict_table_with_other_named_columns_is_embedded(tiny, tmp_path, capsys):
    table = tmp_path / "points.csv"  # a byte-order mark, spaces, extra columns, a blank line
    table.write_text("\ufeffname, lon ,lat\nStuttgart,9.1,48.7\n\nSingapore, 103.8 ,1.3\n")
    out = tmp_path / "out.parquet"
    code, _ = _cli(capsys, "locations", "--checkpoint", tiny[1] / "folder", "--input", table,
                   "--output", out)
    assert code == 0
    result = gpd.read_parquet(out)
    expected = embed_locations(tiny[0], np.array([[48.7, 9.1], [1.3, 103.8]]))
    np.testing.assert_array_equal(result[["lat", "lon"]].to_numpy(), [[48.7, 9.1], [1.3, 103.8]])
    np.testing.assert_allclose(stack(result, "location"), stack(expected, "location"), atol=1e-6)


@pytest.mark.parametrize(("frame", "message"), [
    (pd.DataFrame({"lat": [48.7, np.nan], "lon": [9.1, 9.2]}),
     "row 2: lat is nan (missing or not finite)"),
    (pd.DataFrame({"lat": ["48.7"], "lon": [9.1]}), "column lat holds"),
    (pd.DataFrame({"lat": [48.7, 1.0, -91.0], "lon": [9.1, 9.2, np.inf]}),
     "row 3: lat -91 outside [-90, 90] (were (lon, lat) given?); lon is inf"),
    (pd.DataFrame({"latitude": [48.7], "lon": [9.1]}), "lack lat (lat, lon in degrees)"),
    (pd.DataFrame({"lat": pd.Series([], dtype=float), "lon": pd.Series([], dtype=float)}),
     "no data rows"),
])
def test_parquet_tables_are_checked_too(tiny, tmp_path, capsys, frame, message):
    table = tmp_path / "points.parquet"
    frame.to_parquet(table)
    code, err = _cli(capsys, "locations", "--checkpoint", tiny[1] / "folder", "--input", table,
                     "--output", tmp_path / "out.parquet")
    assert code == 2 and message in _one_error_line(err, table)


def test_embed_locations_checks_the_whole_table_before_batching(tiny):
    model = tiny[0]
    latlon = np.array([[48.7, 9.1]] * 5)
    latlon[3, 1] = np.nan
    with pytest.raises(ContractError, match=r"location 3 is not finite"):
        embed_locations(model, latlon, batch_size=2)  # row 3 is row 1 of its batch
    with pytest.raises(ContractError, match=r"must be \[N, 2\] \(lat, lon\), got shape \(2, 3\)"):
        embed_locations(model, np.array([[48.7, 9.1, 5.0], [1.3, 103.8, 5.0]]))  # never reshaped
    with pytest.raises(ContractError, match=r"locations are not numbers \(could not convert .*48,7"):
        embed_locations(model, pd.DataFrame({"lat": ["48,7"], "lon": [9.1]}))
    one = embed_locations(model, np.array([48.7, 9.1]))
    assert len(one) == 1


# --- 2. bad files are one line and exit status 2 -------------------------------------------

def test_damaged_checkpoints_are_one_line_errors(tiny, tmp_path, capsys):
    points = tmp_path / "points.csv"
    points.write_text("lat,lon\n48.7,9.1\n")
    good_ckpt, good_folder = tiny[1] / "gair.ckpt", tiny[1] / "folder"
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(good_ckpt.read_bytes()[:5000])
    cases = {empty: "empty file (0 bytes", truncated: "not a readable torch file"}
    for name, damage, message in (
            ("zero", lambda b: b"", "empty file (0 bytes"),
            ("cut", lambda b: b[:1000], "not a readable safetensors file"),
            ("json", None, "not valid JSON")):
        folder = tmp_path / name
        folder.mkdir()
        for part in ("config.json", "model.safetensors"):
            (folder / part).write_bytes((good_folder / part).read_bytes())
        if damage is None:
            (folder / "config.json").write_text('{"format": "gair-pre')
            cases[folder / "config.json"] = message
        else:
            weights = folder / "model.safetensors"
            weights.write_bytes(damage(weights.read_bytes()))
            cases[weights] = message
    for damaged, message in cases.items():
        checkpoint = damaged if damaged.suffix == ".ckpt" else damaged.parent
        code, err = _cli(capsys, "locations", "--checkpoint", checkpoint, "--input", points,
                         "--output", tmp_path / "out.parquet")
        assert code == 2 and message in _one_error_line(err, damaged)


def test_missing_and_unreadable_inputs_are_one_line_errors(tiny, tmp_path, capsys):
    folder = tiny[1] / "folder"
    junk = tmp_path / "points.parquet"
    junk.write_text("not parquet")
    points = tmp_path / "points.csv"
    points.write_text("lat,lon\n48.7,9.1\n")
    with pytest.raises(SystemExit):  # a second table would be ignored
        main(["locations", "--checkpoint", str(folder), "--input", str(points), str(points),
              "--output", str(tmp_path / "o.parquet")])
    assert "locations reads one table" in capsys.readouterr().err
    for args, file, message in (
            (["locations", "--input", tmp_path / "none.csv"], tmp_path / "none.csv", "no such file"),
            (["locations", "--input", junk], junk, "not a readable Parquet file"),
            (["street-views", "--input", tmp_path / "nowhere"], tmp_path / "nowhere",
             "no such file or folder"),
            (["street-views", "--input", tmp_path], tmp_path, "no .jpg/.jpeg/.png files"),
            (["rs-points", "--input", points, "--sentinel2-dir", tmp_path / "s2"], tmp_path / "s2",
             "Sentinel-2 folder not found")):
        code, err = _cli(capsys, *args, "--checkpoint", folder, "--output", tmp_path / "o.parquet")
        assert code == 2 and message in _one_error_line(err, file)


# --- 3./4. street views: bounded, upright, one bad image skipped and listed ------------------

def _jpeg(path, size=(64, 48), color=(120, 80, 40), **save):
    Image.new("RGB", size, color).save(path, "JPEG", **save)
    return path


def _declare_size(path, width: int, height: int) -> None:
    """Patch the JPEG's frame header (SOF0) to declare another size: a decompression bomb."""
    data = bytearray(path.read_bytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    path.write_bytes(bytes(data))


def test_bad_images_are_skipped_and_listed(tiny, tmp_path, capsys, caplog):
    views = tmp_path / "views"
    views.mkdir()
    good = [_jpeg(views / "a_good.jpg"), _jpeg(views / "e_good.jpeg", color=(10, 200, 30))]
    _declare_size(_jpeg(views / "b_bomb.jpg"), 30000, 30000)
    (views / "c_empty.jpg").write_bytes(b"")
    (views / "d_text.png").write_text("not an image")
    out = tmp_path / "sv.parquet"
    code, err = _cli(capsys, "street-views", "--checkpoint", tiny[1] / "folder", "--input", views,
                     "--output", out)
    assert code == 0 and "Traceback" not in err
    result = pd.read_parquet(out)
    assert result["path"].tolist() == [str(p) for p in good]
    np.testing.assert_allclose(stack(result, "sv"), stack(embed_street_views(tiny[0], good), "sv"),
                               atol=1e-6)
    rejects = pd.read_csv(rejects_path(out))
    assert list(rejects.columns) == ["stage", "file", "row", "item", "reason", "detail"]
    assert dict(zip(rejects["item"], rejects["reason"], strict=True)) == {
        "b_bomb.jpg": "image too large", "c_empty.jpg": "unreadable image",
        "d_text.png": "unreadable image"}
    assert f"rejected {views / 'b_bomb.jpg'}: image too large (" in caplog.text
    assert f"3 of 5 files rejected (listed in {rejects_path(out)})" in caplog.text

    capped = tmp_path / "capped.parquet"
    code, err = _cli(capsys, "street-views", "--checkpoint", tiny[1] / "folder", "--input",
                     *good, "--output", capped, "--max-image-pixels", "1000")
    assert code == 2 and "none of the 2 files could be used" in _one_error_line(
        err, rejects_path(capped))
    assert not capped.exists()
    assert set(pd.read_csv(rejects_path(capped))["detail"]) == {
        "declares 64 x 48 px, more than the limit of 1,000"}
    with pytest.raises(ImageRejected, match=r"image too large: .*b_bomb\.jpg"):
        embed_street_views(tiny[0], [views / "b_bomb.jpg"])


def test_street_views_are_embedded_upright(tiny, tmp_path, monkeypatch):
    upright = Image.new("RGB", (40, 60), (255, 0, 0))  # portrait: red top, blue bottom
    upright.paste((0, 0, 255), (0, 30, 40, 60))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned a quarter left: viewers turn it right
    stored = tmp_path / "portrait.jpg"
    upright.transpose(Image.Transpose.ROTATE_90).save(stored, "JPEG", exif=exif, quality=95)
    seen = []

    def encode(self, images):
        seen.extend(np.asarray(image) for image in images)
        return np.zeros((len(images), 16), np.float32)

    monkeypatch.setattr(FrozenGAIR, "encode_street_views", encode)
    embed_street_views(tiny[0], [stored])
    (pixels,) = seen
    assert pixels.shape == (60, 40, 3)
    assert pixels[5, 20, 0] > 200 and pixels[55, 20, 2] > 200


# --- 5. rs-patches: the ingest step's checks, bad tiles skipped and listed ------------------

def _tile(path, dtype="uint16", transform=None, crs="EPSG:32632", count=12, size=32):
    data = np.random.default_rng(0).integers(1500, 3000, (count, size, size)).astype(dtype)
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=count,
                       dtype=dtype, crs=crs,
                       transform=transform or from_origin(500000, 5400000, 10, 10)) as dst:
        dst.write(data)
    return path


def test_bad_tiles_are_skipped_with_the_reasons_ingest_gives(tiny, tmp_path, capsys):
    tiles = tmp_path / "tiles"
    tiles.mkdir()
    good = _tile(tiles / "a_good.tif")
    _tile(tiles / "b_sheared.tif", transform=Affine(10, 2, 500000, 0, -10, 5400000))
    _tile(tiles / "c_int16.tif", dtype="int16")
    _tile(tiles / "d_no_crs.tif", crs=None)
    (tiles / "e_empty.tif").write_bytes(b"")
    _tile(tiles / "f_20m.tif", transform=from_origin(500000, 5400000, 20, 20))
    _tile(tiles / "g_bands.tif", count=10)
    cut = _tile(tiles / "h_cut.tif").read_bytes()
    (tiles / "h_cut.tif").write_bytes(cut[: len(cut) // 2])
    out = tmp_path / "rs.parquet"
    code, err = _cli(capsys, "rs-patches", "--checkpoint", tiny[1] / "gair.ckpt", "--input",
                     tiles, "--output", out)
    assert code == 0 and "Traceback" not in err
    result = gpd.read_parquet(out)
    assert result["path"].tolist() == [str(good)]
    np.testing.assert_allclose(stack(result, "rs_global"),
                               stack(embed_rs_patches(tiny[0], [good]), "rs_global"), atol=1e-6)
    rejects = pd.read_csv(rejects_path(out)).set_index("item")["reason"].to_dict()
    ingest = read_tile_index(tiles, verify="full").rejects.set_index("item")["reason"].to_dict()
    assert rejects == ingest == {
        "b_sheared.tif": "rotated grid", "c_int16.tif": "not uint16 digital numbers",
        "d_no_crs.tif": "no CRS", "e_empty.tif": "unreadable file",
        "f_20m.tif": "wrong pixel size", "g_bands.tif": "wrong band count",
        "h_cut.tif": "read failed"}

    code, err = _cli(capsys, "rs-patches", "--checkpoint", tiny[1] / "gair.ckpt", "--input",
                     tiles / "b_sheared.tif", "--output", tmp_path / "none.parquet")
    assert code == 2 and "none of the 1 files could be used" in _one_error_line(
        err, tiles / "b_sheared.tif")
    with pytest.raises(TileRejected, match=r"wrong band count: .*g_bands\.tif .*10 bands, "
                                           r"expected 13"):
        embed_rs_patches(tiny[0], [tiles / "g_bands.tif"], band_order=[*L2A_BANDS, "B10"])


def test_tiles_of_different_sizes_are_embedded_in_one_run(tiny, tmp_path):
    small, large = _tile(tmp_path / "small.tif"), _tile(tmp_path / "large.tif", size=48)
    both = embed_rs_patches(tiny[0], [small, large, small], batch_size=8)
    alone = embed_rs_patches(tiny[0], [large])
    np.testing.assert_allclose(stack(both, "rs_global")[1], stack(alone, "rs_global")[0],
                               atol=1e-6)


def test_a_pickled_namespace_still_loads(tiny, tmp_path):
    """The allowed class (MAE-style ``args``) is not caught by the damaged-file errors."""
    content = torch.load(tiny[1] / "gair.ckpt", weights_only=True)
    torch.save(content | {"args": argparse.Namespace(lr=1.0)}, tmp_path / "with_args.ckpt")
    assert load_model(tmp_path / "with_args.ckpt").contract == tiny[0].contract


def test_rs_points_lists_bad_tiles_and_stops_when_none_is_left(tiny, tmp_path, capsys):
    s2 = tmp_path / "s2"
    s2.mkdir()
    _tile(s2 / "good.tif", size=64)
    _tile(s2 / "int16.tif", dtype="int16", size=64)
    lon, lat = rasterio.warp.transform("EPSG:32632", "EPSG:4326", [500320], [5399680])
    points = tmp_path / "points.csv"
    points.write_text(f"lat,lon\n{lat[0]},{lon[0]}\n0,0\n")
    out = tmp_path / "rs.parquet"
    code, err = _cli(capsys, "rs-points", "--checkpoint", tiny[1] / "folder", "--input", points,
                     "--sentinel2-dir", s2, "--output", out)
    assert code == 0 and "Traceback" not in err
    assert gpd.read_parquet(out)["tile_id"].notna().tolist() == [True, False]
    assert pd.read_csv(rejects_path(out))["item"].tolist() == ["int16.tif"]

    (s2 / "good.tif").unlink()
    code, err = _cli(capsys, "rs-points", "--checkpoint", tiny[1] / "folder", "--input", points,
                     "--sentinel2-dir", s2, "--output", tmp_path / "none.parquet")
    assert code == 2 and "none of the 1 files could be used" in _one_error_line(err, s2)
    with pytest.raises(InputConfigurationError, match="none of the 1 tiles could be used "
                                                      r"\(not uint16 digital numbers\)"):
        embed_rs_at_points(tiny[0], pd.read_csv(points), s2)
    outside = embed_rs_at_points(tiny[0], pd.read_csv(points), s2,
                                 tiles=read_tile_index(s2, verify="header").tiles)
    assert outside["tile_id"].isna().all() and outside["location"].notna().all()
