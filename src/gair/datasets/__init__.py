"""Kedro datasets that kedro-datasets does not offer, and its file datasets saved atomically
(:mod:`gair.datasets.atomic`)."""

from gair.datasets.checkpoint_dataset import CheckpointDataset
from gair.datasets.derived_dataset import DerivedGeoParquetDataset
from gair.datasets.directory_dataset import DirectoryDataset

__all__ = ["CheckpointDataset", "DerivedGeoParquetDataset", "DirectoryDataset"]
