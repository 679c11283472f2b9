"""Kedro datasets that kedro-datasets does not offer."""

from gair.datasets.directory_dataset import DirectoryDataset

__all__ = ["DirectoryDataset"]
