"""Global Streetscapes conventions: table columns and the image folder layout.

Tables are keyed by ``uuid, source, orig_id``; images are ``<uuid>.jpeg`` in folders of
at most N rows named ``<start>_<end>`` after the 1-based row range of the table
(the dataset's ``download_jpegs.py`` layout).
"""

from __future__ import annotations

METADATA_COMMON_ATTRIBUTES_COLUMNS: tuple[str, ...] = (
    "uuid", "source", "orig_id", "lat", "lon", "datetime_local", "year", "month", "day",
    "hour", "width", "height", "heading", "projection_type", "hFoV", "vFoV",
    "sequence_index", "sequence_id", "sequence_img_count",
)
"""The exact columns of ``metadata_common_attributes.csv``, in order."""

STRING_COLUMNS: tuple[str, ...] = ("uuid", "source", "orig_id", "sequence_id")
"""Columns to read as strings: ids of up to 16 digits lose precision as floats."""

PERCEPTION_ATTRIBUTES: tuple[str, ...] = (
    "Safe", "Lively", "Wealthy", "Beautiful", "Boring", "Depressing",
)
"""Perception scores (0-10) predicted for every image, as the dataset names them."""

IMAGE_SUFFIX = ".jpeg"


def image_folder_name(row_number: int, n_rows: int, rows_per_folder: int) -> str:
    """Folder ``<start>_<end>`` holding the image of 1-based ``row_number`` of ``n_rows``."""
    if not 1 <= row_number <= n_rows:
        raise ValueError(f"row {row_number} is outside 1..{n_rows}")
    start = (row_number - 1) // rows_per_folder * rows_per_folder + 1
    end = min(start + rows_per_folder - 1, n_rows)
    return f"{start}_{end}"
