"""Benchmark readers on tiny generated fixtures (and Global Streetscapes' real label files)."""

import numpy as np
import pandas as pd
import pytest
import rasterio
from rasterio.transform import from_origin

from gair.evaluation.benchmarks import (
    EUROSAT_BANDS,
    Targets,
    read_eurosat_ms,
    read_label_csvs,
    read_points_table,
    read_street_view_table,
)
from gair.io.rejects import InputConfigurationError
from tests.conftest import write_eurosat

PERCEPTION = ["Safe", "Lively", "Wealthy", "Beautiful", "Boring", "Depressing"]


def _tif(path, bands, size=8):
    path.parent.mkdir(parents=True, exist_ok=True)
    # Band b holds the value 100 * (b + 1): which bands were picked is visible in the data.
    data = np.stack([np.full((size, size), 100 * (b + 1), np.uint16) for b in range(bands)])
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=bands,
                       dtype="uint16", crs="EPSG:32632",
                       transform=from_origin(500000, 5400000, 10, 10)) as dst:
        dst.write(data)


@pytest.fixture
def eurosat(tmp_path):
    root = write_eurosat(tmp_path / "EuroSAT_MS")
    _tif(root / "River" / "River_4.tif", 12)                     # wrong band count
    (root / "Forest" / "Forest_9.tif").write_bytes(b"not a tiff")  # unreadable
    _tif(root / "Forest" / "Forest_0.tif", 13, size=4)           # wrong size, sorted first
    _tif(root / ".ipynb_checkpoints" / "x.tif", 13)              # not a class
    _tif(root / "__MACOSX" / "Forest" / "y.tif", 13)
    return root


def test_eurosat_ms_reduced_to_gair_bands_by_name(eurosat):
    _tif(eurosat / "Forest" / "Forest_1.tif", 13)  # a file whose bands say their position
    result = read_eurosat_ms(eurosat, size_px=8)
    assert result.images.shape == (6, 10, 8, 8)
    # GAIR's B02..B08, B8A, B11, B12 sit at EuroSAT positions 2..8, 13, 11, 12 (1-based).
    expected = [100 * p for p in (2, 3, 4, 5, 6, 7, 8, 13, 11, 12)]
    assert result.images[0, :, 0, 0].tolist() == expected
    assert sorted(set(result.labels)) == ["Forest", "River"]
    report = result.report()
    assert report["read"] == 9 and report["accepted"] == 6
    assert report["rejected_by_reason"] == {"unreadable": 1, "wrong band count": 1,
                                            "wrong size": 1}
    assert EUROSAT_BANDS[-1] == "B8A"


def test_eurosat_ms_without_usable_images_fails_clearly(tmp_path, eurosat):
    with pytest.raises(InputConfigurationError, match="no class folders"):
        read_eurosat_ms(tmp_path / "nowhere")
    with pytest.raises(InputConfigurationError, match=r"no usable .* among 9 files.*wrong size"):
        read_eurosat_ms(eurosat)  # real EuroSAT is 64 px; these are 8 px


def test_streetscapes_label_csvs_real_files(realdata):
    labels = realdata / "global_streetscapes" / "labels_sample_output"
    targets = Targets(regress=(*PERCEPTION, "segmentation:Road"),
                      classify=("weather", "places365", "pano_status"))
    result = read_label_csvs(labels, targets)
    table = result.accepted
    rows = len(pd.read_csv(labels / "Safe.csv"))
    assert len(table) == rows > 0 and result.report()["rejected"] == 0
    assert all(pd.api.types.is_float_dtype(table[c]) for c in targets.regress)
    assert table[PERCEPTION].min().min() >= 0 and table[PERCEPTION].max().max() <= 10
    # places365.csv names its column "place"; classes stay text even when they read as
    # booleans or numbers.
    assert set(table["places365"]) >= {"street", "crosswalk"}
    assert set(table["pano_status"]) == {"True", "False"}
    assert pd.api.types.is_string_dtype(table["weather"])


def test_streetscapes_label_csvs_count_uuids_once(tmp_path):
    (tmp_path / "Safe.csv").write_text("uuid,Safe\na1,3.5\nd4,1\nd4,2\n../x,1\nb2,\nc3,7\ne5,NA\n")
    (tmp_path / "lively.csv").write_text("UUID,lively\na1,2\nb2,4\n../x,2\nc3,5\ne5,1\nf6,3\n")
    result = read_label_csvs(tmp_path, Targets(regress=("Safe", "Lively")))
    assert result.accepted.set_index("uuid").to_dict("index") == {
        "a1": {"Safe": 3.5, "Lively": 2.0}, "c3": {"Safe": 7.0, "Lively": 5.0}}
    rejects = result.rejects.set_index("item")
    # One reject per uuid, however many files it is bad in: 7 uuids read, 2 accepted.
    assert result.report()["read"] == 7 and len(rejects) == 5
    assert rejects.loc["../x", "reason"] == "unsafe uuid"
    assert rejects.loc["d4", "reason"] == "duplicate uuid"     # two values: which is meant?
    assert rejects.loc["b2", "reason"] == "empty Safe"
    assert rejects.loc["e5", "reason"] == "empty Safe"         # "NA" is no value
    assert rejects.loc["f6", "reason"] == "missing labels"
    assert "no Safe" in rejects.loc["f6", "detail"]
    assert "Safe.csv row 3" in rejects.loc["d4", "detail"]
    with pytest.raises(InputConfigurationError, match=r"Boring\.csv"):
        read_label_csvs(tmp_path, Targets(regress=("Boring",)))


def test_label_csv_columns_are_named_in_wide_files(tmp_path):
    (tmp_path / "segmentation.csv").write_text("uuid,Road,Sky\na1,10,20\n")
    with pytest.raises(InputConfigurationError, match="segmentation:<column>"):
        read_label_csvs(tmp_path, Targets(regress=("segmentation",)))
    result = read_label_csvs(tmp_path, Targets(regress=("segmentation:sky",)))
    assert result.accepted["segmentation:sky"].tolist() == [20.0]


def test_regression_targets_must_be_numbers(tmp_path):
    path = tmp_path / "sv.csv"
    path.write_text("uuid,income,code\nu1,1.5,3\nu2,high,4\nu3,inf,5\nu4, 2 ,6\n")
    result = read_street_view_table(path, Targets(regress=("income",), classify=("code",)))
    assert result.accepted["income"].tolist() == [1.5, 2.0]
    assert result.accepted["code"].tolist() == ["3", "6"]  # integer class codes stay classes
    assert result.rejects["reason"].tolist() == ["non-numeric income"] * 2
    assert result.rejects["detail"].tolist() == ["income='high'", "income='inf'"]


def test_targets_are_stated():
    with pytest.raises(InputConfigurationError, match="no targets"):
        Targets()
    with pytest.raises(InputConfigurationError, match="both"):
        Targets(regress=("a",), classify=("a",))


def test_points_table(tmp_path):
    path = tmp_path / "points.csv"
    path.write_text("lat,lon,label\n48.7,9.1,forest\n95,9,water\n,3,urban\n1.3,103.8,\n"
                    "-23.5,-46.6,urban\nnan,inf,urban\n")
    result = read_points_table(path, Targets(classify=("label",)))
    assert result.accepted["label"].tolist() == ["forest", "urban"]
    assert result.accepted.crs.to_epsg() == 4326
    assert result.accepted.geometry.x.tolist() == [9.1, -46.6]
    assert result.rejects["reason"].tolist() == [
        "lat/lon out of range", "missing or non-numeric lat/lon", "empty label",
        "missing or non-numeric lat/lon"]
    assert result.rejects["row"].tolist() == [2, 3, 4, 6]
    with pytest.raises(InputConfigurationError, match="target"):
        read_points_table(path, Targets(classify=("target",)))


def test_points_table_split_names_are_checked(tmp_path):
    path = tmp_path / "points.csv"
    path.write_text("lat,lon,label,split\n1,1,a,train\n2,2,a,validation\n3,3,b,Test\n"
                    "4,4,b,\n5,5,b,test\n")
    result = read_points_table(path, Targets(classify=("label",)))
    assert result.accepted["split"].tolist() == ["train", "test"]
    assert result.report()["rejected_by_reason"] == {"unknown split": 3}
    assert result.rejects["row"].tolist() == [2, 3, 4]


def test_street_view_table(tmp_path):
    path = tmp_path / "sv.csv"
    path.write_text("uuid,income,label,split,sv\nu1,1.5,a,x,y\nu2,2.5,b,x,y\nu2,3,b,x,y\n"
                    "u3,,c,x,y\nu4,4,d,x,y\n")
    result = read_street_view_table(path, Targets(regress=("income",), classify=("label",)))
    assert result.accepted["uuid"].tolist() == ["u1", "u4"]
    # Columns that would collide with the pairs' (the split is the pair's) are dropped.
    assert list(result.accepted.columns) == ["uuid", "income", "label"]
    assert pd.api.types.is_float_dtype(result.accepted["income"])
    assert result.report()["rejected_by_reason"] == {"duplicate uuid": 2, "empty income": 1}
