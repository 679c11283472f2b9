"""Benchmark readers on tiny generated fixtures (and Global Streetscapes' real label files)."""

import numpy as np
import pandas as pd
import pytest
import rasterio
from rasterio.transform import from_origin

from gair.evaluation.benchmarks import (
    EUROSAT_BANDS,
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
    _tif(root / "Forest" / "Forest_8.tif", 13, size=4)           # wrong size
    return root


def test_eurosat_ms_reduced_to_gair_bands_by_name(eurosat):
    _tif(eurosat / "Forest" / "Forest_1.tif", 13)  # a file whose bands say their position
    result = read_eurosat_ms(eurosat)
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


def test_eurosat_ms_without_class_folders_fails_clearly(tmp_path):
    with pytest.raises(InputConfigurationError, match="no class folders"):
        read_eurosat_ms(tmp_path)


def test_streetscapes_label_csvs_real_files(realdata):
    labels = realdata / "global_streetscapes" / "labels_sample_output"
    result = read_label_csvs(labels, [*PERCEPTION, "weather"])
    table = result.accepted
    rows = len(pd.read_csv(labels / "Safe.csv"))
    assert len(table) == rows > 0 and result.report()["rejected"] == 0
    assert all(pd.api.types.is_float_dtype(table[c]) for c in PERCEPTION)
    assert table[PERCEPTION].min().min() >= 0 and table[PERCEPTION].max().max() <= 10
    assert pd.api.types.is_string_dtype(table["weather"])


def test_streetscapes_label_csvs_rejects_with_reasons(tmp_path):
    (tmp_path / "Safe.csv").write_text("uuid,Safe\na1,3.5\na1,4.0\n../x,1\nb2,\nc3,7\n")
    (tmp_path / "Lively.csv").write_text("uuid,Lively\na1,2\nc3,5\n")
    result = read_label_csvs(tmp_path, ["Safe", "Lively"])
    assert result.accepted.set_index("uuid").to_dict("index") == {
        "a1": {"Safe": 3.5, "Lively": 2.0}, "c3": {"Safe": 7.0, "Lively": 5.0}}
    assert sorted(result.rejects["reason"]) == ["duplicate uuid", "empty Safe", "unsafe uuid"]
    assert result.report()["read"] == 5
    with pytest.raises(InputConfigurationError, match=r"Boring\.csv"):
        read_label_csvs(tmp_path, ["Boring"])


def test_points_table(tmp_path):
    path = tmp_path / "points.csv"
    path.write_text("lat,lon,label\n48.7,9.1,forest\n95,9,water\n,3,urban\n1.3,103.8,\n"
                    "-23.5,-46.6,urban\n")
    result = read_points_table(path, ["label"])
    assert result.accepted["label"].tolist() == ["forest", "urban"]
    assert result.accepted.crs.to_epsg() == 4326
    assert result.accepted.geometry.x.tolist() == [9.1, -46.6]
    assert result.rejects["reason"].tolist() == ["lat/lon out of range",
                                                 "missing or non-numeric lat/lon", "empty label"]
    assert result.rejects["row"].tolist() == [2, 3, 4]
    with pytest.raises(InputConfigurationError, match="target"):
        read_points_table(path, ["target"])


def test_street_view_table(tmp_path):
    path = tmp_path / "sv.csv"
    path.write_text("uuid,income,label\nu1,1.5,a\nu2,2.5,b\nu2,3,b\nu3,,c\n")
    result = read_street_view_table(path, ["income", "label"])
    assert result.accepted["uuid"].tolist() == ["u1", "u2"]
    assert pd.api.types.is_float_dtype(result.accepted["income"])
    assert result.report()["rejected_by_reason"] == {"duplicate uuid": 1, "empty income": 1}
