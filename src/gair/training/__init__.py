"""Lightning training of GAIR: data streaming, the system, and multi-device runs (no Kedro)."""

from gair.training.data import (
    PairDecoder,
    PairsDataModule,
    ShardedPairs,
    band_statistics,
    preprocess_batch,
)
from gair.training.run import run_pretraining
from gair.training.system import GAIRPretraining

__all__ = ["GAIRPretraining", "PairDecoder", "PairsDataModule", "ShardedPairs",
           "band_statistics", "preprocess_batch", "run_pretraining"]
