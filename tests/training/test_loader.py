"""The training loader: undecoded shuffling, persistent workers that still reshuffle."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import torch

from gair.contract import PreprocessingContract
from gair.io.shards import EncodedSample
from gair.training.data import PairsDataModule, ShardedPairs, band_statistics
from tests.training.conftest import TINY_MODEL


def test_samples_are_decoded_as_they_leave_the_shuffle_buffer(tiny_shards):
    table = pd.read_parquet(tiny_shards / "samples.parquet")
    counts = {str(tiny_shards / k): int(v)
              for k, v in table.loc[table["split"] == "train", "shard"].value_counts().items()}
    decoded = []

    def decoder(sample, rng):
        decoded.append(sample)
        return sample

    dataset = ShardedPairs([tiny_shards / s for s in counts], counts, decoder, shuffle=True,
                           buffer_size=8)
    stream = dataset.iter_slot(0, 1)
    first = next(stream)
    assert isinstance(first, EncodedSample) and decoded == [first], "one decoded, 8 held"
    assert len(list(stream)) + 1 == len(decoded) == len(dataset)


def _module(shards, workers: int, epoch: int) -> PairsDataModule:
    mean, std = band_statistics(sorted(shards.rglob("*.tar")), 16)
    module = PairsDataModule(str(shards), 4, PreprocessingContract.for_training(
        mean, std, 32, TINY_MODEL), num_workers=workers, seed=3, shuffle_buffer=8)
    module.setup()
    module.trainer = SimpleNamespace(current_epoch=epoch)
    return module


def _epoch(loader) -> tuple[list[str], torch.Tensor]:
    batches = list(loader)
    return ([u for b in batches for u in b["uuid"]],
            torch.cat([b["augment"]["sv_factors"] for b in batches]))


def test_persistent_workers_shuffle_each_epoch_as_fresh_workers_do(tiny_shards):
    module = _module(tiny_shards, 2, 0)
    loader = module.train_dataloader()
    assert loader.persistent_workers
    seen, workers = [], set()
    for epoch in range(3):
        module.trainer.current_epoch = epoch
        seen.append(_epoch(loader))
        workers.add(tuple(w.pid for w in loader._iterator._workers))
        fresh = _epoch(_module(tiny_shards, 2, epoch).train_dataloader())
        assert seen[-1][0] == fresh[0], "the same order as a run started at this epoch"
        assert torch.equal(seen[-1][1], fresh[1]), "and the same random draws"
    assert len(workers) == 1, "the same worker processes served every epoch"
    assert seen[0][0] != seen[1][0] != seen[2][0], "each epoch is shuffled anew"
