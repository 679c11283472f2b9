"""acquire against a local STAC API and COG bucket (real HTTP, range requests)."""

from __future__ import annotations

import hashlib
import json
import time

import numpy as np
import pandas as pd
import pytest
import rasterio
import requests

import gair.acquire.acquire as acquire_module
from gair.acquire import acquire_sentinel2
from gair.acquire.stac import SCL
from gair.io.l2a import L2A_BANDS
from gair.io.rejects import InputConfigurationError
from gair.io.sentinel2 import read_tile_index
from tests.acquire.conftest import TILE_PX

HTTP = {"max_retry": 2, "retry_delay_s": 0.05, "timeout_s": 5}
MASKED = (0, 1, 3, 8, 9, 10)


def run(server, views, out, **overrides):
    options = dict(provider="earth_search", url=server.api, tile_size_px=TILE_PX,
                   days_window=30, default_date_range=("2023-06-01", "2023-06-30"),
                   http=HTTP, workers=2, progress=False) | overrides
    return acquire_sentinel2(views, out, **options)


def tile_name(world, window: str) -> str:
    epsg, x0, y1 = world.windows[window]
    return f"EPSG{epsg}/S2L2A_E{x0:07d}_N{y1:08d}_{TILE_PX}px.tif"


def digest(folder) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def cog_bytes(server) -> tuple[int, int, int]:
    """COG requests, bytes sent for them, and the sum of the sizes of the files touched."""
    requests_ = server.requests(".tif")
    files = {r.path for r in requests_}
    size = sum((server.root / f.lstrip("/")).stat().st_size for f in files)
    return len(requests_), sum(r.bytes_sent for r in requests_), size


@pytest.fixture
def acquired(world, server, tmp_path):
    out = tmp_path / "sentinel2"
    started = time.perf_counter()
    result = run(server, world.views, out)
    return out, result, time.perf_counter() - started


def test_tiles_are_what_ingest_accepts(world, acquired):
    out, result, _ = acquired
    report = result.report()
    assert report["read"] == len(world.views) == report["accepted"] + report["rejected"]
    index = read_tile_index(out)
    assert len(index.rejects) == 0
    assert sorted(index.tiles["tile_id"]) == sorted(result.tiles["tile"])
    assert len(index.tiles) == 5 == report["windows_fetched"]
    assert set(result.views["uuid"]) | set(result.rejects["item"]) == set(world.views["uuid"])


def test_rejects_name_each_unplaced_view_and_why(world, acquired):
    _, result, _ = acquired
    reasons = dict(zip(result.rejects["item"], result.rejects["reason"], strict=True))
    assert reasons == world.expected_reason
    cloudy = result.rejects.set_index("item").loc["cloudy-1", "detail"]
    assert "S2A_TEST1_20230610_0_L2A: 100% masked" in cloudy
    assert "S2B_TEST1_20230625_0_L2A: 100% masked" in cloudy
    assert (result.rejects["stage"] == "acquire").all()


@pytest.mark.parametrize("window, scene", [("clear", "a1"), ("shadow", "a1"),
                                           ("fallback", "a2"), ("b0", "b"), ("b1", "b")])
def test_pixels_are_the_scene_pixels_at_the_same_ground(world, acquired, window, scene):
    out, _, _ = acquired
    source = world.scenes[scene]
    with rasterio.open(out / tile_name(world, window)) as tile:
        dn, transform, tags = tile.read(), tile.transform, tile.tags()
    assert tags["STAC_ITEM_ID"] == source.item_id  # fallback: A2 where A1 is cloudy
    rows, cols = np.mgrid[0:TILE_PX, 0:TILE_PX]
    x = transform.c + (cols + 0.5) * 10
    y = transform.f - (rows + 0.5) * 10
    masked = np.isin(source.value(SCL, x, y), MASKED)
    for index, band in enumerate(L2A_BANDS):
        expected = np.where(masked, 0, source.value(band, x, y))
        np.testing.assert_array_equal(dn[index], expected, err_msg=band)
    assert float(tags["MASKED_FRACTION"]) == pytest.approx(masked.mean(), abs=1e-6)
    if window == "clear":
        assert masked.mean() == pytest.approx(0.25)  # the cirrus quarter is nodata
    if window == "shadow":
        assert 0 < masked.mean() < 0.5


def test_tags_and_provenance_carry_the_scene_and_its_offset(world, acquired):
    out, result, _ = acquired
    with rasterio.open(out / tile_name(world, "clear")) as tile:
        new = tile.tags()
    with rasterio.open(out / tile_name(world, "b0")) as tile:
        old = tile.tags()
    assert new["SENSING_TIME"] == "2023-06-10T10:20:31.024000Z"
    assert (new["PROCESSING_BASELINE"], new["BOA_ADD_OFFSET"]) == ("05.09", "-1000")
    assert (old["PROCESSING_BASELINE"], old["BOA_ADD_OFFSET"]) == ("02.14", "0")
    assert old["SENSING_TIME"] == "2020-07-14T19:21:57.558000Z"
    assert new["STAC_API"] == world_api(result) and new["STAC_COLLECTION"] == "sentinel-2-l2a"
    index = read_tile_index(out).tiles.set_index("tile_id")
    assert index.loc[tile_name(world, "b0"), "boa_add_offset"] == 0
    assert index.loc[tile_name(world, "clear"), "boa_add_offset"] == -1000
    row = result.tiles.set_index("tile").loc[tile_name(world, "clear")]
    assert sorted(row["view_uuids"]) == ["clear-1", "clear-2"]
    assert row["cloud_cover"] == 5.0 and row["bytes_fetched"] > 0


def world_api(result) -> str:
    return result.tiles["stac_api"].iloc[0]


def test_reads_only_the_windows_and_a_rerun_fetches_nothing(world, server, acquired, tmp_path):
    out, result, elapsed = acquired
    requests_, sent, whole = cog_bytes(server)
    figures = {"windows_fetched": result.report()["windows_fetched"],
               "scl_reads": result.report()["scl_reads"], "cog_requests": requests_,
               "bytes_read": sent, "whole_files_bytes": whole,
               "share": round(sent / whole, 3), "wall_s": round(elapsed, 2),
               "block_bytes_read": result.report()["block_bytes_read"]}
    print("acquire figures", json.dumps(figures))
    assert sent < 0.6 * whole
    before = digest(out)
    server.log.clear()
    again = run(server, world.views, out)
    assert server.log == []  # no search, no COG: every window's tile is there
    assert digest(out) == before
    assert again.report()["windows_reused"] == 5 and again.report()["windows_fetched"] == 0
    assert again.tiles.drop(columns="view_uuids").equals(result.tiles.drop(columns="view_uuids"))


def test_a_crash_mid_write_leaves_no_tile_and_the_next_run_completes(
        world, server, tmp_path, monkeypatch):
    out = tmp_path / "sentinel2"
    real_write = acquire_module.write_l2a_geotiff
    calls = []

    def crash_on_third(path, *args, **kwargs):
        calls.append(path)
        real_write(path, *args, **kwargs)  # the staging file is complete ...
        if len(calls) == 3:
            raise OSError("disk full (injected)")  # ... but the run dies before the rename

    monkeypatch.setattr(acquire_module, "write_l2a_geotiff", crash_on_third)
    with pytest.raises(OSError, match="injected"):
        run(server, world.views, out, workers=1)
    assert not [p for p in out.rglob("*") if p.is_file() and p.name.startswith(".")]
    complete = read_tile_index(out)  # every tile there is whole; the crashed one is absent
    assert len(complete.rejects) == 0 and 2 <= len(complete.tiles) < 5
    assert not (out / calls[2].name.split(".partial")[0].lstrip(".")).exists()
    monkeypatch.setattr(acquire_module, "write_l2a_geotiff", real_write)
    result = run(server, world.views, out)
    report = result.report()
    assert report["windows_reused"] == len(complete.tiles)
    assert report["windows_fetched"] == 5 - len(complete.tiles)
    assert len(read_tile_index(out).tiles) == 5


def test_a_killed_run_leaves_only_hidden_staging_files_removed_next_time(world, server, tmp_path):
    out = tmp_path / "sentinel2"
    orphan = out / f"EPSG{world.scenes['a1'].epsg}" / ".S2L2A_x.tif.partial-999999999-0123abcd"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"half a tile")
    with pytest.raises(InputConfigurationError, match="no Sentinel-2 tiles"):
        read_tile_index(out)  # ingest does not take the staging file for a tile
    run(server, world.views, out)
    assert not orphan.exists()


def test_invalid_coordinates_are_rejected_not_fatal(world, server, tmp_path):
    views = pd.concat([world.views.iloc[:1], pd.DataFrame(
        {"uuid": ["nowhere-1"], "lat": [float("nan")], "lon": [10.0],
         "datetime_utc": [pd.NaT]})], ignore_index=True)
    result = run(server, views, tmp_path / "sentinel2")
    assert result.rejects.set_index("item").loc["nowhere-1", "reason"] == "invalid coordinates"
    assert result.report()["accepted"] == 1


def test_503_on_a_cog_is_retried_then_its_window_rejected(world, server, tmp_path):
    out = tmp_path / "sentinel2"
    scene_b = world.scenes["b"]
    server.fail(f"{scene_b.folder}/{SCL}.tif")  # every request for B's SCL fails
    result = run(server, world.views, out)
    reasons = result.rejects.set_index("item")
    for uuid in ("b0-1", "b1-1"):
        assert reasons.loc[uuid, "reason"] == "HTTP read failed"
        assert "503" in reasons.loc[uuid, "detail"] or "HTTP" in reasons.loc[uuid, "detail"]
    failed = [r for r in server.log if r.status == 503]
    assert len(failed) >= 2 * (HTTP["max_retry"] + 1) - 1  # retried, per window
    assert result.report()["windows_fetched"] == 3  # the other windows went on
    server.failures.clear()
    again = run(server, world.views, out)  # the rerun fetches what failed
    assert again.report()["windows_fetched"] == 2 and again.report()["windows_reused"] == 3


def test_transient_503s_on_search_are_retried(world, server, tmp_path):
    server.fail("/stac/search", times=2)
    result = run(server, world.views, tmp_path / "sentinel2")
    assert result.report()["windows_fetched"] == 5
    assert sum(r.status == 503 for r in server.log) == 2


def test_search_failing_after_retries_rejects_the_areas_and_goes_on(world, server, tmp_path):
    server.fail("/stac/search")
    result = run(server, world.views, tmp_path / "sentinel2")
    assert set(result.rejects["reason"]) == {"STAC search failed"}
    assert result.rejects["detail"].str.contains(server.api, regex=False).all()
    assert len(result.rejects) == len(world.views)


def test_unreachable_api_is_named_in_every_reject(world, tmp_path):
    with socket_closed_port() as url:
        result = run(type("S", (), {"api": url})(), world.views, tmp_path / "sentinel2",
                     http={"max_retry": 1, "retry_delay_s": 0.01, "timeout_s": 2})
    assert set(result.rejects["reason"]) == {"STAC API unreachable"}
    assert result.rejects["detail"].str.contains(f"{url}: ", regex=False).all()
    assert result.rejects["detail"].str.contains("Connection refused").all()
    assert result.report()["accepted"] == 0


def socket_closed_port():
    import contextlib
    import socket

    @contextlib.contextmanager
    def closed():
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        yield f"http://127.0.0.1:{port}/stac"

    return closed()


def test_a_file_acquire_did_not_write_is_left_alone(world, server, tmp_path):
    out = tmp_path / "sentinel2"
    mine = out / tile_name(world, "b0")
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"a user's file")
    result = run(server, world.views, out)
    assert mine.read_bytes() == b"a user's file"
    assert result.rejects.set_index("item").loc["b0-1", "reason"] == "file in the way"


def test_server_answers_ranges_as_http_says(world, server):
    path = f"{world.scenes['a1'].folder}/B02.tif"
    url = f"{server.url}/{path}"
    size = int(requests.head(url, timeout=5).headers["Content-Length"])
    one = requests.get(url, headers={"Range": "bytes=10-19"}, timeout=5)
    assert one.status_code == 206 and len(one.content) == 10
    assert one.headers["Content-Range"] == f"bytes 10-19/{size}"
    two = requests.get(url, headers={"Range": "bytes=0-3,100-103"}, timeout=5)
    assert two.status_code == 206
    assert two.headers["Content-Type"].startswith("multipart/byteranges; boundary=")
    assert two.content.count(b"Content-Range: bytes") == 2
    assert requests.get(url, headers={"Range": f"bytes={size}-"}, timeout=5).status_code == 416
    assert requests.get(url, headers={"Range": "bytes=-4"}, timeout=5).content == \
        (world.root / path).read_bytes()[-4:]


def test_areas_on_a_lat_lon_grid_find_the_same_scenes(world, server, tmp_path):
    result = run(server, world.views, tmp_path / "sentinel2", area={"by": "grid", "grid_deg": 0.02})
    report = result.report()
    assert report["windows_fetched"] == 5
    assert report["stac_searches"] > 3  # smaller areas than the MGRS squares: more searches
