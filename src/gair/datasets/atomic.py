"""kedro-datasets' file datasets, saved atomically.

kedro-datasets opens the target file and writes into it, so a reader running at the same
time (another pipeline, a notebook, DVC) can see half a file, and a save that fails or is
killed midway leaves one behind. These subclasses write a hidden sibling file and rename
it over the target once complete: readers see the old file or the new one, never a part.

Catalog entries name them as ``gair.datasets.atomic.<kedro-datasets class>``, with the
same arguments (versioning included)::

    ingest_rejects:
      type: gair.datasets.atomic.CSVDataset
      filepath: data/02_intermediate/ingest_rejects.csv
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import PurePosixPath
from typing import Any

from kedro.io.core import get_filepath_str
from kedro_datasets.geopandas import GenericDataset as _GenericDataset
from kedro_datasets.json import JSONDataset as _JSONDataset
from kedro_datasets.pandas import CSVDataset as _CSVDataset
from kedro_datasets.pandas import ParquetDataset as _ParquetDataset
from kedro_datasets.text import TextDataset as _TextDataset
from kedro_datasets.yaml import YAMLDataset as _YAMLDataset

from gair.io.directories import replacing_file


def unwrapped_save(bound_save: Callable[[Any], None]) -> Callable[[Any], None]:
    """A dataset's bound ``save`` without the wrapper Kedro puts around every dataset's
    save (errors, versions), for a save that is itself wrapped and calls it."""
    save = getattr(bound_save, "__wrapped__", None)
    return partial(save, bound_save.__self__) if save is not None else bound_save


class AtomicSaveMixin:
    """Put before a kedro-datasets file dataset: its ``save`` writes a staging file.

    The dataset's own save runs unchanged, except that its save path (every
    kedro-datasets file dataset asks ``_get_save_path`` where to write) is a hidden
    staging file beside the target, which then replaces the target
    (:func:`~gair.io.directories.replacing_file`). Remote file systems keep the
    dataset's own save: an object store publishes an upload whole.
    """

    _atomic_staging: PurePosixPath | None = None

    def _get_save_path(self) -> PurePosixPath:
        if self._atomic_staging is not None:
            return self._atomic_staging
        return super()._get_save_path()

    def save(self, data: Any) -> None:
        dataset_save = unwrapped_save(super().save)
        if self._protocol != "file":
            dataset_save(data)
            return
        target = self._get_save_path()  # for a versioned dataset, this save's version
        with replacing_file(get_filepath_str(target, self._protocol)) as staging:
            self._atomic_staging = PurePosixPath(staging.as_posix())
            try:
                dataset_save(data)
            finally:
                self._atomic_staging = None


class CSVDataset(AtomicSaveMixin, _CSVDataset):
    """``pandas.CSVDataset``, saved atomically."""


class ParquetDataset(AtomicSaveMixin, _ParquetDataset):
    """``pandas.ParquetDataset``, saved atomically."""


class JSONDataset(AtomicSaveMixin, _JSONDataset):
    """``json.JSONDataset``, saved atomically."""


class YAMLDataset(AtomicSaveMixin, _YAMLDataset):
    """``yaml.YAMLDataset``, saved atomically."""


class TextDataset(AtomicSaveMixin, _TextDataset):
    """``text.TextDataset``, saved atomically."""


class GenericDataset(AtomicSaveMixin, _GenericDataset):
    """``geopandas.GenericDataset`` (e.g. GeoParquet), saved atomically."""


__all__ = ["AtomicSaveMixin", "CSVDataset", "GenericDataset", "JSONDataset", "ParquetDataset",
           "TextDataset", "YAMLDataset", "unwrapped_save"]
