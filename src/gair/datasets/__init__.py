"""Kedro datasets that kedro-datasets does not offer."""

from gair.datasets.checkpoint_dataset import CheckpointDataset
from gair.datasets.directory_dataset import DirectoryDataset

__all__ = ["CheckpointDataset", "DirectoryDataset"]
