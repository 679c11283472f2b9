"""A folder of files in some raw format, as one Kedro dataset."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io.core import AbstractDataset, DatasetError

from gair.io.directories import MANIFEST_NAME, check_replaceable, publish_directory


class DirectoryDataset(AbstractDataset[Path, Path]):
    """A local folder: ``load`` gives its path, ``save`` moves a finished folder into place.

    Raw inputs such as a Global Streetscapes release or a folder of Sentinel-2 tiles are
    folders of many files that readers walk themselves; this dataset puts such a folder on
    the Kedro graph so ``kedro viz`` and the run order see who writes and who reads it.

    A node that generates such a folder builds it in a staging folder with
    :func:`~gair.io.directories.stage_directory` and returns that folder's path; ``save``
    swaps it in place of this folder atomically and consumes it
    (:func:`~gair.io.directories.publish_directory`). It refuses to replace a folder that
    was not generated (real data) or that holds files added or edited since it was
    generated; the project's hooks ask :meth:`check_replaceable` before the run starts.

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

    def save(self, data: Path) -> None:
        if not isinstance(data, str | os.PathLike):
            raise DatasetError(
                f"{type(self).__name__} saves the path of a folder built with "
                f"gair.io.directories.stage_directory, got {type(data).__name__}"
            )
        publish_directory(self._path, data)

    def check_replaceable(self) -> None:
        """Raise :class:`~gair.io.directories.NotGeneratedError` if ``save`` would refuse."""
        check_replaceable(self._path)

    def _exists(self) -> bool:
        return self._path.is_dir()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path), "manifest": MANIFEST_NAME}
