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

from gair.contract import PreprocessingContract, RSContract
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


_INTERPOLATION = {"bilinear": TF.InterpolationMode.BILINEAR,
                  "bicubic": TF.InterpolationMode.BICUBIC}


def normalize_rs(reflectance: torch.Tensor, valid: torch.Tensor, rs: RSContract) -> torch.Tensor:
    """Reflectance x 10000 [bands, H, W] -> the encoder's input scale, as ``rs`` says."""
    mean = torch.tensor(rs.band_mean, dtype=torch.float32)[:, None, None]
    std = torch.tensor(rs.band_std, dtype=torch.float32)[:, None, None]
    if rs.normalization == "official":
        low = mean - 2 * std
        scaled = ((reflectance - low) / (4 * std) * 255.0).clamp(0.0, 255.0)
        return torch.floor(scaled) / 255.0  # the official uint8 cast truncates
    return (reflectance - mean) / std * valid[None]


def resize_rs(x: torch.Tensor, size: int, interpolation: str) -> torch.Tensor:
    """[bands, S, S] -> [bands, size, size]; ``area`` averages exactly where S is a
    multiple of ``size`` (antialiased bilinear otherwise)."""
    if x.shape[-1] == size:
        return x
    if interpolation == "area" and x.shape[-1] % size == 0:
        return torch.nn.functional.avg_pool2d(x[None], x.shape[-1] // size)[0]
    mode = "bicubic" if interpolation == "bicubic" else "bilinear"
    return torch.nn.functional.interpolate(x[None], size=(size, size), mode=mode,
                                           align_corners=False, antialias=True)[0]


OFFICIAL_JITTER_BANDS = (1, 2, 3)
"""Band indices the official code jitters (B03, B04, B05 after its band drop; the
reference notes a probable off-by-one for B02-B04, kept as published)."""


def official_rs_jitter(x: torch.Tensor, rng: random.Random) -> torch.Tensor:
    """torchvision's ``ColorJitter(brightness=0.2, contrast=0.2)`` on the official bands of
    an RS input in [0, 1]: both factors in [0.8, 1.2], applied in a random order, the
    contrast pivot being the grayscale mean of the three bands read as RGB."""
    bands = list(OFFICIAL_JITTER_BANDS)
    part = x[bands]
    brightness, contrast = rng.uniform(0.8, 1.2), rng.uniform(0.8, 1.2)
    steps = [lambda t: TF.adjust_brightness(t, brightness),
             lambda t: TF.adjust_contrast(t, contrast)]
    if rng.random() < 0.5:
        steps.reverse()
    for step in steps:
        part = step(part)
    x = x.clone()
    x[bands] = part
    return x


class PairTransform:
    """Sample dict from a shard -> tensors: ``rs`` [10, S, S], ``sv`` [3, S', S'],
    ``query`` (x, y), ``latlon`` (lat, lon), preprocessed as the ``contract`` says.

    RS: normalised (:func:`normalize_rs`) and resized to the encoder's input (the query
    coordinate is resolution-free, so resizing keeps the alignment); no geometric RS
    augmentation; when training, with probability ``rs_jitter`` the official code's
    brightness/contrast jitter (:func:`official_rs_jitter`; official p = 0.7, needs the
    ``official`` normalisation, whose values lie in [0, 1]). SV: resize,
    normalise, and when training a horizontal flip (p 0.5) and brightness/contrast/
    saturation jitter (p 0.3). Random draws come from the ``rng`` the caller gives.
    """

    def __init__(self, contract: PreprocessingContract, train: bool,
                 rs_jitter: float = 0.0) -> None:
        if rs_jitter and contract.rs.normalization != "official":
            raise ValueError("the official RS jitter works on [0, 1] inputs: it needs the "
                             "'official' RS normalisation")
        self.contract, self.train, self.rs_jitter = contract, train, rs_jitter
        self.sv_mean = torch.tensor(contract.sv.mean)[:, None, None]
        self.sv_std = torch.tensor(contract.sv.std)[:, None, None]

    def rs(self, reflectance: np.ndarray, valid: np.ndarray,
           rng: random.Random | None = None) -> torch.Tensor:
        contract = self.contract.rs
        x = normalize_rs(torch.from_numpy(reflectance.astype(np.float32)),
                         torch.from_numpy(valid), contract)
        x = resize_rs(x, contract.model_input_px, contract.interpolation)
        if self.train and rng is not None and self.rs_jitter and rng.random() < self.rs_jitter:
            x = official_rs_jitter(x, rng)
        return x

    def sv(self, image, rng: random.Random | None = None) -> torch.Tensor:
        # Resized as floats in [0, 1] (no uint8 rounding; resizing commutes with the
        # per-channel normalisation, which the official code applies first).
        size = self.contract.sv.size_px
        x = TF.resize(TF.pil_to_tensor(image).float() / 255.0, [size, size],
                      interpolation=_INTERPOLATION[self.contract.sv.interpolation],
                      antialias=True)
        if self.train and rng is not None:
            if rng.random() < 0.5:
                x = TF.horizontal_flip(x)
            if rng.random() < 0.3:
                x = TF.adjust_brightness(x, rng.uniform(0.9, 1.1))
                x = TF.adjust_contrast(x, rng.uniform(0.9, 1.1))
                x = TF.adjust_saturation(x, rng.uniform(0.9, 1.1))
        return (x * 255.0 - self.sv_mean) / self.sv_std

    def __call__(self, sample: dict[str, Any], rng: random.Random | None = None) -> dict[str, Any]:
        meta = sample["meta"]
        return {
            "rs": self.rs(sample["rs"], sample["valid"], rng),
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

    def __init__(self, shards_dir: str, batch_size: int, contract: PreprocessingContract,
                 num_workers: int = 0, seed: int = 0, shuffle_buffer: int = 256,
                 rs_jitter: float = 0.0) -> None:
        super().__init__()
        self.shards_dir = Path(shards_dir)
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.shuffle_buffer, self.sv_size = shuffle_buffer, contract.sv.size_px
        self.transforms = {train: PairTransform(contract, train, rs_jitter)
                           for train in (True, False)}

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
