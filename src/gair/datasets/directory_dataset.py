"""A folder of files in some raw format, as one Kedro dataset."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io.core import AbstractDataset, DatasetError

from gair.io.directories import MANIFEST_NAME, DirectoryWriter, replace_directory


class DirectoryDataset(AbstractDataset[DirectoryWriter, Path]):
    """A local folder: ``load`` gives its path, ``save`` writes a generator's folder whole.

    Raw inputs such as a Global Streetscapes release or a folder of Sentinel-2 tiles are
    folders of many files that readers walk themselves; this dataset puts such a folder on
    the Kedro graph so ``kedro viz`` and the run order see who writes and who reads it.
    ``save`` takes a :class:`~gair.io.directories.DirectoryWriter` and replaces the folder
    atomically, and refuses to replace a folder that was not generated (real data) or
    that holds files added or edited since it was generated.

    Example catalog entry::

        sentinel2_raw:
          type: gair.datasets.DirectoryDataset
          path: ${globals:sentinel2_dir}
    """

    def __init__(self, path: str, metadata: dict[str, Any] | None = None) -> None:
        self._path = Path(PurePosixPath(path))
        self.metadata = metadata

    def load(self) -> Path:
        if not self._path.is_dir():
            raise DatasetError(f"folder {self._path} does not exist")
        return self._path

    def save(self, data: DirectoryWriter) -> None:
        if not callable(getattr(data, "write", None)):
            raise DatasetError(
                f"{type(self).__name__} saves objects with a write(directory) method, "
                f"got {type(data).__name__}"
            )
        replace_directory(self._path, data.write)

    def _exists(self) -> bool:
        return self._path.is_dir()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path), "manifest": MANIFEST_NAME}
