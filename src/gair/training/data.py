"""Streaming the pairing shards into batches: the dataset and the DataModule.

Work is split where it is cheapest. DataLoader workers read the stored bytes, shuffle them
undecoded, and decode each sample as it leaves the shuffle buffer into compact tensors
(:class:`gair.preprocessing.PairDecoder`). Normalisation, RS resizing and augmentation then
run on whole batches on the accelerator (:meth:`PairsDataModule.on_after_batch_transfer`,
:func:`gair.preprocessing.preprocess_batch`).
"""

from __future__ import annotations

import hashlib
import multiprocessing
import random
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from gair.contract import PreprocessingContract
from gair.io.shards import SAMPLES_TABLE, EncodedSample, decode_patch, read_encoded_shard
from gair.preprocessing import PairDecoder, preprocess_batch


def _rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class ShardedPairs(IterableDataset):
    """Pairs streamed from tar shards; ranks and DataLoader workers read disjoint parts.

    With at least as many shards as (rank, worker) slots, each slot reads whole shards;
    otherwise every slot reads all shards and keeps every n-th sample. Each slot yields
    the same number of samples (``per_slot``), so DDP ranks run the same number of steps.
    The shuffle buffer holds samples as stored (:class:`~gair.io.shards.EncodedSample`);
    ``decoder(sample, rng)`` turns each into tensors as it leaves.

    The epoch lives in shared memory: DataLoader workers that persist across epochs read
    the value :meth:`set_epoch` wrote in the main process each time an epoch starts.
    """

    def __init__(self, shards: Sequence[Path], counts: dict[str, int],
                 decoder: Callable[[EncodedSample, random.Random], Any], shuffle: bool,
                 seed: int = 0, buffer_size: int = 256, multiple_of: int = 1,
                 num_workers: int = 1) -> None:
        super().__init__()
        self.shards = sorted(Path(s) for s in shards)
        self.counts = counts
        self.decoder, self.shuffle, self.seed = decoder, shuffle, seed
        self.buffer_size, self.multiple_of = buffer_size, multiple_of
        self.num_workers = max(1, num_workers)
        self._epoch = multiprocessing.RawValue("q", 0)

    @property
    def epoch(self) -> int:
        return self._epoch.value

    def set_epoch(self, epoch: int) -> None:
        self._epoch.value = epoch

    def _plan(self, slot: int, slots: int) -> tuple[list[Path], int | None, int]:
        """(shards to read, keep every n-th sample from this offset or None, quota)."""
        total = sum(self.counts[str(s)] for s in self.shards)
        if len(self.shards) >= slots:
            mine = [s for i, s in enumerate(self.shards) if i % slots == slot]
            per_slot = min(sum(self.counts[str(s)] for j, s in enumerate(self.shards)
                               if j % slots == k) for k in range(slots))
            plan = (mine, None, per_slot)
        else:
            plan = (list(self.shards), slot, total // slots)
        shards, offset, quota = plan
        return shards, offset, quota // self.multiple_of * self.multiple_of

    def _decode(self, sample: EncodedSample, epoch: int) -> Any:
        """Decode with random draws keyed by (seed, epoch, sample), not by history: a run
        resumed from a checkpoint sees exactly the batches an uninterrupted run would."""
        key = hashlib.blake2b(f"{self.seed}:{epoch}:{sample.key}".encode(),
                              digest_size=8).digest()
        return self.decoder(sample, random.Random(key))

    def samples_per_rank(self) -> int:
        _, world = _rank_and_world()
        slots = world * self.num_workers
        return sum(self._plan(k, slots)[2] for k in range(self.num_workers))

    def __len__(self) -> int:
        return self.samples_per_rank()

    def __iter__(self) -> Iterator[Any]:
        rank, world = _rank_and_world()
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        return self.iter_slot(rank * workers + worker, world * workers)

    def iter_slot(self, slot: int, slots: int) -> Iterator[Any]:
        """The samples of one (rank, worker) slot out of ``slots``, decoded."""
        epoch = self.epoch  # read once: the whole pass is one epoch's
        shards, offset, quota = self._plan(slot, slots)
        rng = random.Random(f"{self.seed}:{epoch}:{slot}")
        if self.shuffle:
            # One shard order for all slots: striding by sample index must see one sequence.
            random.Random(f"{self.seed}:{epoch}").shuffle(shards)
        buffer: list[EncodedSample] = []
        produced = 0
        index = 0
        for shard in shards:
            for sample in read_encoded_shard(shard):
                index += 1
                if offset is not None and (index - 1) % slots != offset:
                    continue
                if not self.shuffle:
                    if produced == quota:
                        return
                    produced += 1
                    yield self._decode(sample, epoch)
                    continue
                buffer.append(sample)
                if len(buffer) >= self.buffer_size:
                    if produced == quota:
                        return
                    produced += 1
                    yield self._decode(buffer.pop(rng.randrange(len(buffer))), epoch)
        while buffer and produced < quota:
            produced += 1
            yield self._decode(buffer.pop(rng.randrange(len(buffer))), epoch)


def band_statistics(shards: Sequence[Path], max_samples: int = 512) -> tuple[list[float], list[float]]:
    """Per-band mean and std of valid pixels over the first ``max_samples`` samples (each
    street view counts its patch)."""
    total = total_sq = None
    count = 0
    seen = 0
    for shard in sorted(shards):
        for sample in read_encoded_shard(shard):
            reflectance, valid = decode_patch(sample.patch)
            pixels = reflectance[:, valid].astype(np.float64)
            total = pixels.sum(1) if total is None else total + pixels.sum(1)
            total_sq = (pixels**2).sum(1) if total_sq is None else total_sq + (pixels**2).sum(1)
            count += pixels.shape[1]
            seen += 1
            if seen >= max_samples:
                break
        if seen >= max_samples:
            break
    if not count:
        raise ValueError("no valid RS pixels in the training shards")
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 1e-6))
    return mean.round(3).tolist(), std.round(3).tolist()


class EpochLoader(DataLoader):
    """A DataLoader over :class:`ShardedPairs` that sets the dataset's epoch from
    ``epoch()`` as each pass starts, before its workers begin it: workers that persist
    across epochs still shuffle and draw anew each epoch."""

    def __init__(self, dataset: ShardedPairs, epoch: Callable[[], int], **kwargs: Any) -> None:
        super().__init__(dataset, **kwargs)
        self.epoch = epoch

    def __iter__(self) -> Iterator[Any]:
        return self._pass()

    def _pass(self) -> Iterator[Any]:
        # Started at the first batch, not at iter(): Lightning asks for a resumed run's
        # iterator before it has restored the epoch counter.
        self.dataset.set_epoch(self.epoch())
        yield from super().__iter__()


class PairsDataModule(L.LightningDataModule):
    """Train/val loaders over ``<shards_dir>/<split>/*.tar`` (counts from
    ``samples.parquet``), with persistent workers; batches are preprocessed after they
    reach the device (:func:`preprocess_batch`)."""

    def __init__(self, shards_dir: str, batch_size: int, contract: PreprocessingContract,
                 num_workers: int = 0, seed: int = 0, shuffle_buffer: int = 256,
                 rs_jitter: float = 0.0) -> None:
        super().__init__()
        self.shards_dir = Path(shards_dir)
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.shuffle_buffer, self.contract = shuffle_buffer, contract
        self.decoders = {train: PairDecoder(contract, train, rs_jitter) for train in (True, False)}

    def _dataset(self, split: str, train: bool) -> ShardedPairs:
        samples = pd.read_parquet(self.shards_dir / SAMPLES_TABLE, columns=["shard", "split"])
        counts = samples.loc[samples["split"] == split, "shard"].value_counts()
        shards = sorted(self.shards_dir / s for s in counts.index)
        return ShardedPairs(
            shards, {str(self.shards_dir / k): int(v) for k, v in counts.items()},
            self.decoders[train], shuffle=train, seed=self.seed,
            buffer_size=self.shuffle_buffer,
            multiple_of=self.batch_size if train else 1,
            num_workers=self.num_workers,
        )

    def setup(self, stage: str | None = None) -> None:
        self.train_set = self._dataset("train", True)
        self.val_set = self._dataset("val", False)

    def _epoch(self) -> int:
        """The trainer's epoch; without a trainer, the epoch set on the training set."""
        return self.trainer.current_epoch if self.trainer is not None else self.train_set.epoch

    def _loader(self, dataset: ShardedPairs, drop_last: bool) -> EpochLoader:
        return EpochLoader(dataset, self._epoch, batch_size=self.batch_size,
                           num_workers=self.num_workers, drop_last=drop_last,
                           persistent_workers=self.num_workers > 0,
                           pin_memory=torch.cuda.is_available())

    def train_dataloader(self) -> EpochLoader:
        return self._loader(self.train_set, drop_last=True)

    def val_dataloader(self) -> EpochLoader:
        return self._loader(self.val_set, drop_last=False)

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        return preprocess_batch(batch, self.contract)
