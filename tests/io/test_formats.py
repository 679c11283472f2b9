"""Format conventions: Sentinel-2 offsets, Streetscapes layout and columns (vs real files)."""

from __future__ import annotations

import numpy as np
import pytest

from gair.io.l2a import boa_add_offset
from gair.io.sentinel2 import reflectance_to_dn
from gair.io.streetscapes import METADATA_COMMON_ATTRIBUTES_COLUMNS, image_folder_name


@pytest.mark.parametrize(
    ("baseline", "offset"),
    [("05.09", -1000), ("N0400", -1000), ("04.00", -1000), ("03.01", 0), ("N0213", 0)],
)
def test_boa_add_offset_by_processing_baseline(baseline, offset):
    assert boa_add_offset(baseline) == offset


def test_bad_baseline_is_a_clear_error():
    with pytest.raises(ValueError, match=r"'5\.9'"):
        boa_add_offset("5.9")


def test_reflectance_to_dn_keeps_zero_for_nodata():
    dn = reflectance_to_dn(np.array([0.0, 0.1234, -0.2, 7.0]), "05.09")
    assert dn.dtype == np.uint16
    assert dn.tolist() == [1000, 2234, 1, 65534]
    assert reflectance_to_dn(np.array([0.0]), "03.00").tolist() == [1]


@pytest.mark.parametrize(
    ("row", "n_rows", "folder"),
    [(1, 50, "1_50"), (50, 50, "1_50"), (51, 120, "51_100"), (120, 120, "101_120")],
)
def test_image_folder_names_follow_download_jpegs(row, n_rows, folder):
    assert image_folder_name(row, n_rows, 50) == folder


def test_image_folder_rejects_rows_outside_the_table():
    with pytest.raises(ValueError, match="outside"):
        image_folder_name(0, 10, 5)


@pytest.mark.realdata
def test_metadata_columns_match_the_real_table(realdata):
    path = realdata / "global_streetscapes" / "tables" / "02_metadata_common_attributes.csv"
    header = path.read_text().splitlines()[0].split(",")
    assert tuple(header) == METADATA_COMMON_ATTRIBUTES_COLUMNS


@pytest.mark.realdata
def test_real_image_folders_follow_the_layout(realdata):
    images = sorted((realdata / "global_streetscapes" / "img").glob("*/*.jpeg"))
    assert images and {p.parent.name for p in images} == {image_folder_name(1, 50, 10_000)}
