"""Training shards: what goes in comes out, each patch is stored once, bytes are
reproducible, readers are disjoint."""

from __future__ import annotations

import io
import itertools
import tarfile

import numpy as np
import pytest
import torch

from gair.geo.pairing import pair_points
from gair.io.directories import read_manifest, replace_directory
from gair.io.l2a import GAIR_BANDS
from gair.io.sentinel2 import read_tile_index
from gair.io.shards import (
    ExtractionSettings,
    extract_shards,
    patch_key,
    read_encoded_shard,
    read_shard,
    shards_for_worker,
    write_shard,
)
from gair.io.streetscapes import read_street_views

SETTINGS = ExtractionSettings(patch_size=32, min_valid_fraction=0.5, sv_short_side=40,
                              jpeg_quality=85)


def _candidates(world):
    points = read_street_views(world["streetscapes"]).points
    tiles = read_tile_index(world["sentinel2"]).tiles
    placed = pair_points(points["lat"].to_numpy(), points["lon"].to_numpy(), tiles, 32, 0.5,
                         {"train": 0.5, "val": 0.25, "test": 0.25}, 0)
    candidates = points[["uuid", "lat", "lon", "image_path"]].join(placed)
    return candidates.dropna(subset=["tile_id"]).reset_index(drop=True), tiles


def _extract(world, directory, workers):
    candidates, tiles = _candidates(world)
    result = {}

    def write(staging):
        result["pairs"], result["rejects"] = extract_shards(
            candidates, tiles, world["sentinel2"], world["streetscapes"], staging, SETTINGS,
            samples_per_shard=5, workers=workers)
        return {}

    replace_directory(directory, write)
    return candidates, result["pairs"], result["rejects"]


@pytest.fixture(scope="module")
def extracted(small_world, tmp_path_factory):
    directory = tmp_path_factory.mktemp("shards") / "shards"
    candidates, pairs, rejects = _extract(small_world, directory, workers=1)
    return directory, candidates, pairs, rejects


def test_every_candidate_is_a_sample_or_a_reject(extracted):
    _, candidates, pairs, rejects = extracted
    assert len(pairs) + len(rejects) == len(candidates)
    assert set(pairs["uuid"]).isdisjoint(rejects["item"])
    assert set(rejects["reason"]) <= {"patch mostly nodata", "street view in nodata"}
    assert len(pairs) > 0.5 * len(candidates)


def test_samples_round_trip_through_the_shards(extracted):
    directory, _, pairs, _ = extracted
    by_uuid = pairs.set_index("uuid")
    seen = set()
    for shard in sorted(directory.rglob("*.tar")):
        split = shard.parent.name
        for sample in read_shard(shard):
            meta = sample["meta"]
            expected = by_uuid.loc[sample["key"]]
            assert meta["split"] == split == expected["split"]
            assert (meta["qx"], meta["qy"]) == (expected["qx"], expected["qy"])
            assert meta["bands"] == list(GAIR_BANDS)
            assert sample["rs"].shape == (10, 32, 32) and sample["rs"].dtype == np.uint16
            assert sample["valid"].shape == (32, 32) and sample["valid"].dtype == bool
            assert sample["valid"].mean() >= 0.5
            assert sample["sv"].dtype == torch.uint8 and sample["sv"].shape[0] == 3
            assert min(sample["sv"].shape[1:]) <= 40
            seen.add(sample["key"])
    assert seen == set(pairs["uuid"])


def test_each_patch_is_stored_once_per_shard_and_shared_by_its_views(extracted):
    directory, _, pairs, _ = extracted
    by_uuid = pairs.set_index("uuid")
    shared = 0
    for shard in sorted(directory.rglob("*.tar")):
        with tarfile.open(shard) as tar:
            stored = [m.name.partition(".")[0] for m in tar if m.name.endswith(".rs.npy")]
        mine = pairs[pairs["shard"] == str(shard.relative_to(directory))]
        assert sorted(stored) == sorted(patch_key(p) for p in mine["patch_id"].unique())
        patches = {}
        for sample in read_encoded_shard(shard):
            assert sample.meta["patch_key"] == patch_key(by_uuid.loc[sample.key, "patch_id"])
            patches.setdefault(sample.patch.key, []).append(sample.patch)
        for views in patches.values():
            assert all(p is views[0] for p in views), "views share their patch's bytes"
            shared += len(views) > 1
    assert shared > 0, "some patch has several views"


def test_a_shard_of_the_former_layout_is_refused(tmp_path):
    """Before patches were stored once, each view carried its own copy: such a shard
    says it must be written again instead of reading as empty."""
    rs, valid = np.zeros((10, 4, 4), np.uint16), np.ones((4, 4), bool)
    write_shard(tmp_path / "new.tar", [{"key": "patch-1", "rs": rs, "valid": valid, "views": [
        {"key": "view", "sv_jpeg": b"", "meta": {"uuid": "view"}}]}])
    with tarfile.open(tmp_path / "new.tar") as new, \
            tarfile.open(tmp_path / "old.tar", "w", format=tarfile.PAX_FORMAT) as old:
        payloads = {m.name.partition(".")[2]: new.extractfile(m).read() for m in new}
        for kind in ("sv.jpg", "rs.npy", "valid.npy", "json"):
            payload = b'{"uuid": "view"}' if kind == "json" else payloads[kind]
            info = tarfile.TarInfo(f"view.{kind}")
            info.size = len(payload)
            old.addfile(info, io.BytesIO(payload))
    assert [s.key for s in read_encoded_shard(tmp_path / "new.tar")] == ["view"]
    with pytest.raises(ValueError, match="rerun the pair pipeline"):
        list(read_encoded_shard(tmp_path / "old.tar"))


@pytest.mark.parametrize("sv_size", [None, 48, 30, 20, 8])
def test_street_views_decode_as_pil_decodes_them(sv_size):
    """At full scale by torchvision (faster), at a reduced DCT scale by PIL's draft: the
    pixels PIL gives either way."""
    from PIL import Image

    from gair.io.shards import decode_sv

    rng = np.random.default_rng(0)
    pixels = np.clip(rng.normal(120, 40, (1, 1, 3)) + rng.normal(0, 25, (60, 80, 3)), 0, 255)
    jpeg = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(jpeg, format="JPEG", quality=90)
    expected = Image.open(io.BytesIO(jpeg.getvalue()))
    if sv_size:
        expected.draft("RGB", (sv_size, sv_size))
    expected = torch.from_numpy(np.array(expected.convert("RGB"))).permute(2, 0, 1)
    decoded = decode_sv(jpeg.getvalue(), sv_size)
    assert decoded.dtype == torch.uint8 and torch.equal(decoded, expected)
    assert min(decoded.shape[1:]) == {None: 60, 48: 60, 30: 30, 20: 30, 8: 15}[sv_size]


def test_shards_are_byte_identical_with_parallel_extraction(extracted, small_world, tmp_path):
    directory, *_ = extracted
    _extract(small_world, tmp_path / "parallel", workers=2)
    assert read_manifest(directory)["files"] == read_manifest(tmp_path / "parallel")["files"]


@pytest.mark.parametrize(("world_size", "num_workers"), [(1, 1), (2, 1), (2, 3), (4, 2)])
def test_ranks_and_workers_read_disjoint_shards(extracted, world_size, num_workers):
    directory, *_ = extracted
    paths = sorted(directory.rglob("*.tar"))
    assigned = [shards_for_worker(paths, rank, world_size, worker, num_workers)
                for rank, worker in itertools.product(range(world_size), range(num_workers))]
    flat = [p for part in assigned for p in part]
    assert sorted(flat) == paths and len(flat) == len(set(flat))


def test_street_views_are_stored_upright_and_bounded(tmp_path):
    """A portrait photo stored landscape with EXIF Orientation 6 is stored portrait; a
    header declaring 30000 x 30000 px is refused before decoding."""
    from PIL import Image

    from gair.io.images import ImageRejected
    from gair.io.shards import _street_view_jpeg

    landscape = Image.new("RGB", (320, 240), (200, 30, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to view
    landscape.save(tmp_path / "portrait.jpeg", exif=exif)
    stored = Image.open(io.BytesIO(_street_view_jpeg(tmp_path / "portrait.jpeg", 120, 90,
                                                     10**8)))
    assert stored.size == (120, 160)

    data = bytearray((tmp_path / "portrait.jpeg").read_bytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = (30000).to_bytes(2, "big") * 2
    (tmp_path / "bomb.jpeg").write_bytes(bytes(data))
    with pytest.raises(ImageRejected, match="image too large"):
        _street_view_jpeg(tmp_path / "bomb.jpeg", 120, 90, 10**8)


def _tar(path, members, format=tarfile.PAX_FORMAT, directory=False):
    with tarfile.open(path, "w", format=format) as tar:
        if directory:
            folder = tarfile.TarInfo("a-folder")
            folder.type = tarfile.DIRTYPE
            tar.addfile(folder)
        for name, payload in members:
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return path


@pytest.mark.parametrize("format", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_the_shard_reader_reads_what_tarfile_reads(tmp_path, format):
    """Long names (pax records, GNU long names, the ustar prefix), empty and
    block-sized payloads, non-ASCII names: the same members and bytes as tarfile."""
    from gair.io.shards import _tar_files

    rng = np.random.default_rng(0)
    long = "folder-" + "x" * 120 if format != tarfile.USTAR_FORMAT else "p" * 120 + "/view"
    members = [(f"{long}.sv.jpg", rng.bytes(1000)), ("empty.json", b""),
               ("block.rs.npy", rng.bytes(512)), ("straße.json", b'{"a": 1}'),
               ("big.valid.npy", rng.bytes(70_001))]
    shard = _tar(tmp_path / "s.tar", members, format)
    with tarfile.open(shard) as tar:
        expected = [(m.name, tar.extractfile(m).read()) for m in tar]
    assert list(_tar_files(shard)) == expected == members


def test_a_damaged_shard_is_an_error_naming_it_and_the_byte(tmp_path):
    """Cut inside a member, cut at a member's end (which would lose views silently), a
    flipped header byte, a member that is not a file: each one an error, never fewer
    samples."""
    from gair.io.shards import _tar_files

    shard = _tar(tmp_path / "s.tar", [("a.json", b"1" * 700), ("b.json", b"2" * 10)])
    data = shard.read_bytes()
    # a.json: header at 0, payload to 1212, padded to 1536; b.json: header at 1536.
    cases = {"inside.tar": (data[:1100], "member at byte 0 holds 588 of its 700 bytes"),
             "boundary.tar": (data[:2560], "no end-of-archive block after byte 2560"),
             "header.tar": (data[:1536 + 300], "truncated tar header at byte 1536"),
             "flipped.tar": (data[:1536 + 10] + b"X" + data[1536 + 11:], "byte 1536 .checksum"),
             "empty.tar": (b"", "no end-of-archive block after byte 0")}
    for name, (content, reason) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=f"{name}: .*{reason}"):
            list(_tar_files(tmp_path / name))
    folder = _tar(tmp_path / "folder.tar", [("a.json", b"1")], directory=True)
    with pytest.raises(ValueError, match=r"folder\.tar: the member at byte 0 is not a plain file"):
        list(_tar_files(folder))


def test_damage_that_tarfile_reads_past_is_an_error_too(tmp_path):
    """A zeroed header mid-shard (tarfile stops there: fewer samples, no error), a cut
    inside the padding, and pax records that are garbage or that never advance."""
    from gair.io.shards import _tar_files

    data = _tar(tmp_path / "s.tar", [("a.json", b"1" * 700), ("b.json", b"2" * 10)]).read_bytes()
    long = _tar(tmp_path / "long.tar", [("v" * 150 + ".json", b"{}")]).read_bytes()
    assert long[156:157] == b"x"  # a pax header first, its records at byte 512
    cases = {"zeroed.tar": (data[:1536] + bytes(512) + data[2048:],
                            "data after the end-of-archive block at byte 1536"),
             "padding.tar": (data[:2100], "holds 10 of its 10 bytes and part of its padding"),
             "stuck.tar": (long[:512] + b"000" + long[515:], "corrupt pax header at byte 0"),
             "garbage.tar": (long[:512] + b"abc" + long[515:], "corrupt pax header at byte 0")}
    for name, (content, reason) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=f"{name}: .*{reason}"):
            list(_tar_files(tmp_path / name))
