"""Lightning training of GAIR: data streaming, the system, and multi-device runs (no Kedro)."""

from gair.training.data import PairsDataModule, PairTransform, ShardedPairs, band_statistics
from gair.training.run import run_pretraining
from gair.training.system import GAIRPretraining

__all__ = ["GAIRPretraining", "PairTransform", "PairsDataModule", "ShardedPairs",
           "band_statistics", "run_pretraining"]
