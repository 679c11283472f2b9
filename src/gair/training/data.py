"""Streaming the pairing shards into batches: datasets, transforms and the DataModule."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from torchvision.transforms.v2 import functional as TF

from gair.contract import SV_MEAN, SV_STD
from gair.io.shards import SAMPLES_TABLE, read_shard


def _rank_and_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class ShardedPairs(IterableDataset):
    """Pairs streamed from tar shards; ranks and DataLoader workers read disjoint parts.

    With at least as many shards as (rank, worker) slots, each slot reads whole shards;
    otherwise every slot reads all shards and keeps every n-th sample. Each slot yields
    the same number of samples (``per_slot``), so DDP ranks run the same number of steps.
    """

    def __init__(self, shards: Sequence[Path], counts: dict[str, int], transform,
                 shuffle: bool, seed: int = 0, buffer_size: int = 256,
                 multiple_of: int = 1, num_workers: int = 1, sv_size: int | None = None) -> None:
        super().__init__()
        self.shards = sorted(Path(s) for s in shards)
        self.counts = counts
        self.transform, self.shuffle, self.seed = transform, shuffle, seed
        self.buffer_size, self.multiple_of = buffer_size, multiple_of
        self.num_workers = max(1, num_workers)
        self.sv_size = sv_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

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

    def _seeded_transform(self, sample: dict[str, Any]) -> dict[str, Any]:
        """Augment with random draws keyed by (seed, epoch, sample), not by history: a run
        resumed from a checkpoint sees exactly the batches an uninterrupted run would."""
        key = hashlib.blake2b(f"{self.seed}:{self.epoch}:{sample['key']}".encode(),
                              digest_size=8).digest()
        return self.transform(sample, random.Random(key))

    def samples_per_rank(self) -> int:
        _, world = _rank_and_world()
        slots = world * self.num_workers
        return sum(self._plan(k, slots)[2] for k in range(self.num_workers))

    def __len__(self) -> int:
        return self.samples_per_rank()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        rank, world = _rank_and_world()
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        return self.iter_slot(rank * workers + worker, world * workers)

    def iter_slot(self, slot: int, slots: int) -> Iterator[dict[str, Any]]:
        """The samples of one (rank, worker) slot out of ``slots``."""
        shards, offset, quota = self._plan(slot, slots)
        rng = random.Random(f"{self.seed}:{self.epoch}:{slot}")
        if self.shuffle:
            # One shard order for all slots: striding by sample index must see one sequence.
            random.Random(f"{self.seed}:{self.epoch}").shuffle(shards)
        buffer: list[dict] = []
        produced = 0
        index = 0
        transform = self._seeded_transform
        for shard in shards:
            for sample in read_shard(shard, self.sv_size):
                index += 1
                if offset is not None and (index - 1) % slots != offset:
                    continue
                if not self.shuffle:
                    if produced == quota:
                        return
                    produced += 1
                    yield transform(sample)
                    continue
                buffer.append(sample)
                if len(buffer) >= self.buffer_size:
                    if produced == quota:
                        return
                    produced += 1
                    yield transform(buffer.pop(rng.randrange(len(buffer))))
        while buffer and produced < quota:
            produced += 1
            yield transform(buffer.pop(rng.randrange(len(buffer))))


class PairTransform:
    """Sample dict from a shard -> tensors: ``rs`` [10, S, S], ``sv`` [3, S', S'],
    ``query`` (x, y), ``latlon`` (lat, lon).

    RS: per-band z-score of reflectance x 10000, nodata set to the mean, resized to the
    encoder's input by area averaging (the query coordinate is resolution-free, so resizing
    keeps the alignment); no geometric RS augmentation. SV: resize, normalise, and when
    training a horizontal flip (p 0.5) and brightness/contrast/saturation jitter (p 0.3),
    drawn from the ``rng`` the caller gives.
    """

    def __init__(self, rs_size: int, sv_size: int, band_mean: Sequence[float],
                 band_std: Sequence[float], train: bool, sv_mean: Sequence[float] = SV_MEAN,
                 sv_std: Sequence[float] = SV_STD) -> None:
        self.rs_size, self.sv_size, self.train = rs_size, sv_size, train
        self.mean = torch.tensor(band_mean, dtype=torch.float32)[:, None, None]
        self.std = torch.tensor(band_std, dtype=torch.float32)[:, None, None]
        self.sv_mean = torch.tensor(sv_mean)[:, None, None]
        self.sv_std = torch.tensor(sv_std)[:, None, None]

    def rs(self, reflectance: np.ndarray, valid: np.ndarray) -> torch.Tensor:
        x = (torch.from_numpy(reflectance.astype(np.float32)) - self.mean) / self.std
        x = x * torch.from_numpy(valid)[None]
        size = x.shape[-1]
        if size != self.rs_size:
            if size % self.rs_size == 0:  # an exact area average
                x = torch.nn.functional.avg_pool2d(x[None], size // self.rs_size)[0]
            else:
                x = torch.nn.functional.interpolate(x[None], size=(self.rs_size, self.rs_size),
                                                    mode="bilinear", align_corners=False,
                                                    antialias=True)[0]
        return x

    def sv(self, image, rng: random.Random | None = None) -> torch.Tensor:
        x = TF.resize(TF.pil_to_tensor(image), [self.sv_size, self.sv_size], antialias=True)
        if self.train and rng is not None:
            if rng.random() < 0.5:
                x = TF.horizontal_flip(x)
            if rng.random() < 0.3:
                x = TF.adjust_brightness(x, rng.uniform(0.9, 1.1))
                x = TF.adjust_contrast(x, rng.uniform(0.9, 1.1))
                x = TF.adjust_saturation(x, rng.uniform(0.9, 1.1))
        return (x.float() - self.sv_mean) / self.sv_std

    def __call__(self, sample: dict[str, Any], rng: random.Random | None = None) -> dict[str, Any]:
        meta = sample["meta"]
        return {
            "rs": self.rs(sample["rs"], sample["valid"]),
            "sv": self.sv(sample["sv"], rng),
            "query": torch.tensor([meta["qx"], meta["qy"]], dtype=torch.float32),
            "latlon": torch.tensor([meta["lat"], meta["lon"]], dtype=torch.float32),
            "uuid": meta["uuid"],
        }


def band_statistics(shards: Sequence[Path], max_samples: int = 512) -> tuple[list[float], list[float]]:
    """Per-band mean and std of valid pixels over the first ``max_samples`` samples."""
    total = total_sq = None
    count = 0
    seen = 0
    for shard in sorted(shards):
        for sample in read_shard(shard):
            pixels = sample["rs"][:, sample["valid"]].astype(np.float64)
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


class PairsDataModule(L.LightningDataModule):
    """Train/val loaders over ``<shards_dir>/<split>/*.tar`` (counts from ``samples.parquet``)."""

    def __init__(self, shards_dir: str, batch_size: int, rs_size: int, sv_size: int,
                 band_mean: Sequence[float], band_std: Sequence[float], num_workers: int = 0,
                 seed: int = 0, shuffle_buffer: int = 256) -> None:
        super().__init__()
        self.shards_dir = Path(shards_dir)
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.shuffle_buffer, self.sv_size = shuffle_buffer, sv_size
        self.transforms = {
            train: PairTransform(rs_size, sv_size, band_mean, band_std, train)
            for train in (True, False)
        }

    def _dataset(self, split: str, train: bool) -> ShardedPairs:
        samples = pd.read_parquet(self.shards_dir / SAMPLES_TABLE, columns=["shard", "split"])
        counts = samples.loc[samples["split"] == split, "shard"].value_counts()
        shards = sorted(self.shards_dir / s for s in counts.index)
        return ShardedPairs(
            shards, {str(self.shards_dir / k): int(v) for k, v in counts.items()},
            self.transforms[train], shuffle=train, seed=self.seed,
            buffer_size=self.shuffle_buffer,
            multiple_of=self.batch_size if train else 1,
            num_workers=self.num_workers, sv_size=self.sv_size,
        )

    def setup(self, stage: str | None = None) -> None:
        self.train_set = self._dataset("train", True)
        self.val_set = self._dataset("val", False)

    def _loader(self, dataset: ShardedPairs, drop_last: bool) -> DataLoader:
        # Workers are not persistent: each epoch's workers see the epoch set on the dataset.
        return DataLoader(dataset, batch_size=self.batch_size, num_workers=self.num_workers,
                          drop_last=drop_last, pin_memory=torch.cuda.is_available())

    def train_dataloader(self) -> DataLoader:
        # Called every epoch (the trainer reloads dataloaders each epoch): reshuffle by epoch.
        self.train_set.set_epoch(self.trainer.current_epoch if self.trainer else 0)
        return self._loader(self.train_set, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, drop_last=False)
