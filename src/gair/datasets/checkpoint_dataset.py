"""A model checkpoint file as a Kedro dataset (copied, never pickled by Kedro)."""

from __future__ import annotations

import shutil
from pathlib import Path, PurePosixPath
from typing import Any

from kedro.io.core import AbstractDataset, DatasetError

from gair.io.directories import replacing_file


class CheckpointDataset(AbstractDataset[Path, Path]):
    """``save(path)`` copies a checkpoint file into place atomically; ``load()`` gives its path.

    Checkpoints are written by the trainer; this dataset publishes the chosen one under a
    stable name for DVC and downstream pipelines, which load it with ``weights_only``.
    """

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = Path(PurePosixPath(filepath))
        self.metadata = metadata

    def load(self) -> Path:
        if not self._filepath.is_file():
            raise DatasetError(f"checkpoint {self._filepath} does not exist")
        return self._filepath

    def save(self, data: Path) -> None:
        source = Path(data)
        if not source.is_file():
            raise DatasetError(f"cannot publish checkpoint: {source} is not a file")
        with replacing_file(self._filepath) as staging:
            shutil.copyfile(source, staging)

    def _exists(self) -> bool:
        return self._filepath.is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}
