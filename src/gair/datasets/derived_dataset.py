"""A GeoParquet table made from a generated folder, refused once that folder is replaced."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import geopandas as gpd
from kedro.io.core import DatasetError

from gair.datasets.atomic import GenericDataset, unwrapped_save
from gair.io.directories import MANIFEST_NAME, manifest_digest

DERIVED_FROM_KEY = "gair_derived_from"
"""Key, in the table's ``attrs`` (kept in the Parquet metadata), of the folder it was made
from and the SHA-256 of that folder's manifest."""


class DerivedGeoParquetDataset(GenericDataset):
    """GeoParquet (saved atomically) that knows which generated folder it describes.

    A table and the folder it describes are saved one after the other (the pairs table is
    written after the shards folder is swapped in), so a run interrupted between the two
    leaves a table describing other files. ``save`` records the SHA-256 of the folder's
    manifest (:data:`~gair.io.directories.MANIFEST_NAME`, which pins every file in it);
    ``load`` refuses the table unless the folder still holds that manifest.

    Example catalog entry::

        pairs:
          type: gair.datasets.DerivedGeoParquetDataset
          filepath: data/05_model_input/pairs.parquet
          derived_from: data/05_model_input/shards
          rerun: kedro run --pipelines pair
    """

    def __init__(self, *, filepath: str, derived_from: str,
                 rerun: str = "the pipeline that writes them",
                 load_args: dict[str, Any] | None = None,
                 save_args: dict[str, Any] | None = None,
                 metadata: dict[str, Any] | None = None) -> None:
        super().__init__(filepath=filepath, file_format="parquet", load_args=load_args,
                         save_args=save_args, metadata=metadata)
        self._derived_from = Path(PurePosixPath(derived_from))
        self._rerun = rerun

    def _stamp(self) -> dict[str, str]:
        if not (self._derived_from / MANIFEST_NAME).is_file():
            raise DatasetError(f"cannot save {self._filepath}: {self._derived_from}, the folder "
                               f"it is made from, has no {MANIFEST_NAME}")
        return {"folder": str(self._derived_from),
                "manifest_sha256": manifest_digest(self._derived_from)}

    def save(self, data: gpd.GeoDataFrame) -> None:
        stamped = data.copy(deep=False)
        stamped.attrs[DERIVED_FROM_KEY] = self._stamp()
        unwrapped_save(super().save)(stamped)

    def load(self) -> gpd.GeoDataFrame:
        table = super().load()
        recorded = table.attrs.pop(DERIVED_FROM_KEY, None)
        manifest = self._derived_from / MANIFEST_NAME
        remedy = f"Rerun `{self._rerun}` to write both again."
        if not isinstance(recorded, dict) or "manifest_sha256" not in recorded:
            raise DatasetError(f"{self._filepath} does not record which {self._derived_from} it "
                               f"was made from (it was written by an older gair). {remedy}")
        if not manifest.is_file():
            raise DatasetError(f"{self._filepath} was made from {self._derived_from}, which no "
                               f"longer holds a {MANIFEST_NAME}. {remedy}")
        if manifest_digest(self._derived_from) != recorded["manifest_sha256"]:
            raise DatasetError(
                f"{self._filepath} does not match {self._derived_from}: it was made from a "
                f"folder whose {MANIFEST_NAME} had SHA-256 {recorded['manifest_sha256']}, but "
                f"{manifest} differs (a run was probably interrupted after replacing "
                f"{self._derived_from} and before writing {self._filepath}). {remedy}"
            )
        return table

    def _describe(self) -> dict[str, Any]:
        return super()._describe() | {"derived_from": str(self._derived_from)}
