"""Lightning training of GAIR: data streaming, the system, and multi-device runs (no Kedro;
the preprocessing is :mod:`gair.preprocessing`)."""

from gair.training.data import PairsDataModule, ShardedPairs, band_statistics
from gair.training.run import run_pretraining
from gair.training.system import GAIRPretraining

__all__ = ["GAIRPretraining", "PairsDataModule", "ShardedPairs", "band_statistics",
           "run_pretraining"]
