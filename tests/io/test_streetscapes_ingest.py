"""Ingesting Global Streetscapes: every bad row goes to the rejects with its reason."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from gair.io.rejects import InputConfigurationError
from gair.io.streetscapes import (
    METADATA_COMMON_ATTRIBUTES_COLUMNS,
    PERCEPTION_ATTRIBUTES,
    check_jpeg,
    read_street_views,
)

TABLE = "metadata_common_attributes.csv"


@pytest.fixture
def release(small_world, tmp_path):
    """A writable copy of the small world's Streetscapes release."""
    target = tmp_path / "streetscapes"
    shutil.copytree(small_world["streetscapes"], target)
    return target


def _table(release) -> pd.DataFrame:
    return pd.read_csv(release / TABLE, dtype=str, keep_default_na=False)


def _rewrite(release, table: pd.DataFrame) -> None:
    table.to_csv(release / TABLE, index=False)


def _image(release, uuid: str):
    return next((release / "images").glob(f"*/{uuid}.jpeg"))


def test_clean_release_is_accepted_whole_with_labels(release):
    result = read_street_views(release)
    n = len(_table(release))
    assert result.report() == {"read": n, "accepted": n, "rejected": 0, "rejected_by_reason": {}}
    points = result.points
    assert points.crs.to_epsg() == 4326
    assert set(METADATA_COMMON_ATTRIBUTES_COLUMNS) <= set(points.columns)
    assert set(PERCEPTION_ATTRIBUTES) <= set(points.columns)
    assert {"weather", "lighting_condition", "image_path", "datetime_utc"} <= set(points.columns)
    assert points["orig_id"].map(type).eq(str).all()
    assert points["datetime_utc"].notna().all()
    assert (points.geometry.x == points["lon"]).all() and (points.geometry.y == points["lat"]).all()
    assert all((release / p).is_file() for p in points["image_path"])


@pytest.mark.parametrize(
    ("lat", "lon", "reason"),
    [("", "9.1", "missing lat/lon"), ("nan", "9.1", "missing lat/lon"),
     ("48.7", "NaN", "missing lat/lon"), ("abc", "9.1", "lat/lon not a number"),
     ("91.0", "9.1", "lat/lon out of range"), ("48.7", "-180.5", "lat/lon out of range")],
)
def test_bad_coordinates_are_rejected_with_file_and_row(release, lat, lon, reason):
    table = _table(release)
    table.loc[4, ["lat", "lon"]] = [lat, lon]
    _rewrite(release, table)
    result = read_street_views(release)
    rejected = result.rejects.iloc[0]
    assert len(result.rejects) == 1 and rejected["reason"] == reason
    assert rejected["row"] == 5 and rejected["file"].endswith(TABLE)
    assert rejected["item"] == table.loc[4, "uuid"]
    assert result.report()["read"] == result.report()["accepted"] + 1


def test_duplicate_uuid_keeps_the_first_row(release):
    table = _table(release)
    table.loc[7, "uuid"] = table.loc[2, "uuid"]
    _rewrite(release, table)
    result = read_street_views(release)
    assert result.rejects[["row", "reason"]].values.tolist() == [[8, "duplicate uuid"]]
    assert (result.points["uuid"] == table.loc[2, "uuid"]).sum() == 1


@pytest.mark.parametrize("uuid", ["../../x", "a/b", "..", "x.jpeg", " lead", ""])
def test_unsafe_uuid_is_rejected_before_any_path_is_built(release, uuid):
    (release / "x.jpeg").write_bytes(b"not inside images/")
    table = _table(release)
    table.loc[0, "uuid"] = uuid
    _rewrite(release, table)
    result = read_street_views(release)
    assert result.rejects["reason"].tolist() == ["unsafe uuid"]


def test_listed_image_missing(release):
    table = _table(release)
    _image(release, table.loc[3, "uuid"]).unlink()
    result = read_street_views(release)
    assert result.rejects[["row", "reason"]].values.tolist() == [[4, "image missing"]]
    relaxed = read_street_views(release, require_images=False)
    assert len(relaxed.points) == len(table)
    assert relaxed.points.loc[relaxed.points["uuid"] == table.loc[3, "uuid"], "image_path"].item() == ""


def test_truncated_and_corrupt_jpegs(release):
    table = _table(release)
    truncated = _image(release, table.loc[1, "uuid"])
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    _image(release, table.loc[6, "uuid"]).write_bytes(b"GIF89a not a jpeg at all")
    result = read_street_views(release)
    reasons = dict(zip(result.rejects["row"], result.rejects["detail"], strict=True))
    assert set(result.rejects["reason"]) == {"corrupt image"}
    assert "truncated" in reasons[2] and "not a JPEG" in reasons[7]
    assert result.report()["accepted"] == len(table) - 2


def test_decode_check_catches_damage_the_markers_miss(release):
    table = _table(release)
    image = _image(release, table.loc[0, "uuid"])
    data = image.read_bytes()
    huffman = data.index(b"\xff\xc4")  # garble a Huffman table: only decoding notices
    image.write_bytes(data[: huffman + 5] + b"\xff" * 12 + data[huffman + 17 :])
    assert check_jpeg(image) is None
    assert check_jpeg(image, decode=True) is not None


def test_flat_image_folder_is_found(release):
    for path in list((release / "images").glob("*/*.jpeg")):
        path.rename(release / "images" / path.name)
    result = read_street_views(release)
    assert result.report()["accepted"] == len(_table(release))
    assert result.points["image_path"].str.fullmatch(r"images/[^/]+\.jpeg").all()


def test_configuration_that_cannot_work_stops_with_one_clear_message(release):
    table = _table(release).drop(columns=["lat"])
    _rewrite(release, table)
    with pytest.raises(InputConfigurationError, match=rf"{TABLE}: required column\(s\) missing: lat"):
        read_street_views(release)
    with pytest.raises(InputConfigurationError, match=r"nope\.csv: metadata table not found"):
        read_street_views(release, metadata_table="nope.csv")


@pytest.mark.realdata
def test_real_metadata_table_ingests_with_its_quirks(realdata):
    release = realdata / "global_streetscapes"
    result = read_street_views(
        release, metadata_table="tables/02_metadata_common_attributes.csv",
        label_tables=["labels_sample_output/Safe.csv", "labels_sample_output/weather.csv"],
        images_dir="img",
    )
    report = result.report()
    assert report == {"read": 2319, "accepted": 25, "rejected": 2294,
                      "rejected_by_reason": {"image missing": 2294}}
    points = result.points
    assert points["orig_id"].str.fullmatch(r"\d+").all()
    assert points["datetime_utc"].notna().all()
    assert points["Safe"].between(0, 10).all() and points["weather"].notna().all()
    without_images = read_street_views(
        release, metadata_table="tables/02_metadata_common_attributes.csv", label_tables=[],
        require_images=False,
    )
    assert without_images.report()["accepted"] == 2319
    assert "1666317524185318" in set(without_images.points["orig_id"])
    assert without_images.points["datetime_utc"].notna().all()


def test_rows_with_a_wrong_field_count_are_rejected_by_row(release):
    """pandas fails on a long row, pads a short one, and reads a table whose every row is
    one field longer as if its first column were the index: each row is checked instead."""
    lines = (release / TABLE).read_text().splitlines()
    n = len(lines) - 1
    lines[3] += ",extra"                      # data row 3: one field too many
    lines[5] = lines[5].rsplit(",", 2)[0]     # data row 5: two fields short
    (release / TABLE).write_text("\n".join(lines) + "\n")
    result = read_street_views(release)
    rejects = result.rejects.set_index("row")
    assert result.report()["read"] == n and len(result.points) == n - 2
    assert rejects.loc[3, "reason"] == rejects.loc[5, "reason"] == "wrong field count"
    assert rejects.loc[3, "item"] == lines[3].split(",")[0]
    assert "20 fields, the header has 19" in rejects.loc[3, "detail"]

    every = [lines[0]] + [line + ",extra" for line in lines[1:]]
    (release / TABLE).write_text("\n".join(every) + "\n")
    result = read_street_views(release)
    assert result.report()["rejected_by_reason"] == {"wrong field count": n}
    assert result.rejects["item"].tolist() == [line.split(",")[0] for line in lines[1:]]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-8-sig"])
def test_tables_with_a_byte_order_mark_are_read(release, encoding):
    text = (release / TABLE).read_text()
    (release / TABLE).write_bytes(text.encode(encoding))
    assert read_street_views(release).report()["rejected"] == 0


def test_text_in_another_encoding_is_one_clear_error(release):
    table = _table(release)
    table.loc[4, "source"] = "Mapillary Zürich"
    (release / TABLE).write_bytes(table.to_csv(index=False).encode("latin-1"))
    with pytest.raises(InputConfigurationError, match=rf"{TABLE}: line 6: not utf-8 text"):
        read_street_views(release)
    points = read_street_views(release, encoding="latin-1").points
    assert "Mapillary Zürich" in set(points["source"])
    (release / TABLE).write_bytes(table.to_csv(index=False).encode("utf-16-le"))
    with pytest.raises(InputConfigurationError, match="NUL bytes"):
        read_street_views(release)


def test_a_label_table_with_a_malformed_row_names_file_and_row(release):
    lines = (release / "perception.csv").read_text().splitlines()
    lines[2] += ",7.5"
    (release / "perception.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(InputConfigurationError, match=r"perception.csv: data row 2: wrong field"):
        read_street_views(release)


def test_an_image_declaring_a_huge_size_is_rejected_not_decoded(release):
    """A JPEG whose header declares 30000 x 30000 px (Pillow raises DecompressionBombError
    on opening it) is a reject with its reason; the limit is configurable."""
    table = _table(release)
    uuid = table.loc[0, "uuid"]
    path = _image(release, uuid)
    data = bytearray(path.read_bytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = (30000).to_bytes(2, "big") * 2  # height, width
    path.write_bytes(bytes(data))
    result = read_street_views(release)
    reject = result.rejects.set_index("item").loc[uuid]
    assert reject["reason"] == "corrupt image" and "image too large" in reject["detail"]
    assert result.report()["accepted"] == len(table) - 1
    small = read_street_views(release, max_image_pixels=100)
    assert small.report()["rejected"] == len(table)


def test_an_image_in_two_folders_is_not_guessed(release):
    """Two files for one uuid (in two <start>_<end> folders) may be two photos: the row is
    rejected naming both, rather than one picked by folder order."""
    uuid = _table(release).loc[0, "uuid"]
    original = _image(release, uuid)
    other = release / "images" / "999_1000"
    other.mkdir()
    shutil.copy(original, other / original.name)
    result = read_street_views(release)
    reject = result.rejects.set_index("item").loc[uuid]
    assert reject["reason"] == "image found twice"
    assert original.parent.name in reject["detail"] and "999_1000" in reject["detail"]
    assert result.report()["accepted"] == len(_table(release)) - 1
