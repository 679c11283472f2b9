"""Streaming the pairing shards into batches: the dataset, the DataModule, preprocessing.

Work is split where it is cheapest. DataLoader workers read the stored bytes, shuffle them
undecoded, and decode each sample as it leaves the shuffle buffer into compact tensors
(:class:`PairDecoder`: the street view decoded and resized in uint8, the RS patch as
stored, uint16, and the sample's random augmentation draws). Normalisation, RS resizing
and augmentation then run on whole batches wherever the batch is, the accelerator in
training (:meth:`PairsDataModule.on_after_batch_transfer`). :func:`preprocess_rs` and
:func:`preprocess_sv` (both: :func:`preprocess_batch`) are the one preprocessing of
training, validation, evaluation (``gair.evaluation.embeddings``) and the embedding API
(``gair.embed``).
"""

from __future__ import annotations

import functools
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
from torchvision.transforms.v2 import functional as TF

from gair.contract import PreprocessingContract, RSContract, SVContract
from gair.io.shards import (
    SAMPLES_TABLE,
    EncodedSample,
    decode_patch,
    decode_sv,
    read_encoded_shard,
)


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


_INTERPOLATION = {"bilinear": TF.InterpolationMode.BILINEAR,
                  "bicubic": TF.InterpolationMode.BICUBIC}


def resize_sv(image: torch.Tensor, sv: SVContract) -> torch.Tensor:
    """An RGB image uint8 [3, H, W] -> uint8 [3, S, S] at the contract's size and
    interpolation (antialiased). Resized in uint8, not floats: a quarter of the bytes to
    move, and a fraction of the CPU time; the price is rounding to whole levels (at most
    1 of 255 for bilinear; bicubic overshoot beyond [0, 255] is clipped, several levels at
    sharp edges; ``tests/training/test_preprocessing.py`` measures both)."""
    return TF.resize(image, [sv.size_px, sv.size_px],
                     interpolation=_INTERPOLATION[sv.interpolation], antialias=True)


def draw_augmentation(rng: random.Random, rs_jitter: float) -> dict[str, torch.Tensor]:
    """One training sample's random draws, in a fixed order: RS jitter (with probability
    ``rs_jitter``: brightness and contrast in [0.8, 1.2], applied in a random order), SV
    horizontal flip (p 0.5), SV jitter (p 0.3: brightness, contrast, saturation in
    [0.9, 1.1]). Factors not drawn are 1. Applied on the batch by :func:`preprocess_rs` and
    :func:`preprocess_sv`."""
    rs = bool(rs_jitter) and rng.random() < rs_jitter
    rs_factors = (rng.uniform(0.8, 1.2), rng.uniform(0.8, 1.2)) if rs else (1.0, 1.0)
    contrast_first = rs and rng.random() < 0.5
    flip = rng.random() < 0.5
    sv = rng.random() < 0.3
    sv_factors = tuple(rng.uniform(0.9, 1.1) for _ in range(3)) if sv else (1.0, 1.0, 1.0)
    return {
        "rs_jittered": torch.tensor(rs), "rs_contrast_first": torch.tensor(contrast_first),
        "rs_factors": torch.tensor(rs_factors, dtype=torch.float32),
        "sv_flipped": torch.tensor(flip), "sv_jittered": torch.tensor(sv),
        "sv_factors": torch.tensor(sv_factors, dtype=torch.float32),
    }


class PairDecoder:
    """A stored sample -> the compact tensors its batch carries to the device:
    ``rs`` uint16 [10, P, P] (reflectance x 10000, as stored), ``valid`` bool [P, P],
    ``sv`` uint8 [3, S, S] (:func:`resize_sv`), ``query`` (x, y), ``latlon`` (lat, lon),
    ``uuid``, and when training ``augment`` (:func:`draw_augmentation`, from the ``rng``
    the caller gives). :func:`preprocess_batch` turns a batch of them into model inputs.
    """

    def __init__(self, contract: PreprocessingContract, train: bool,
                 rs_jitter: float = 0.0) -> None:
        if rs_jitter and contract.rs.normalization != "official":
            raise ValueError("the official RS jitter works on [0, 1] inputs: it needs the "
                             "'official' RS normalisation")
        self.contract, self.train, self.rs_jitter = contract, train, rs_jitter

    def __call__(self, sample: EncodedSample, rng: random.Random | None = None) -> dict[str, Any]:
        reflectance, valid = decode_patch(sample.patch)
        meta = sample.meta
        out = {
            "rs": torch.from_numpy(reflectance), "valid": torch.from_numpy(valid),
            "sv": resize_sv(decode_sv(sample.sv_jpeg, self.contract.sv.size_px),
                            self.contract.sv),
            "query": torch.tensor([meta["qx"], meta["qy"]], dtype=torch.float32),
            "latlon": torch.tensor([meta["lat"], meta["lon"]], dtype=torch.float32),
            "uuid": meta["uuid"],
        }
        if self.train:
            out["augment"] = draw_augmentation(rng, self.rs_jitter)
        return out


def _per_channel(values: Sequence[float], device: torch.device) -> torch.Tensor:
    """``values`` as float32 [C, 1, 1] on ``device``, made once per device: a tensor built
    from a list on a GPU is a blocking copy, which would wait for the device every batch."""
    return _per_channel_cached(tuple(values), device)


@functools.cache
def _per_channel_cached(values: tuple[float, ...], device: torch.device) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32, device=device)[:, None, None]


def normalize_rs(reflectance: torch.Tensor, valid: torch.Tensor, rs: RSContract) -> torch.Tensor:
    """Reflectance x 10000 [N, bands, H, W] (any numeric dtype) -> float32 at the
    encoder's input scale, as ``rs`` says; ``valid`` [N, H, W] marks pixels with data."""
    x = reflectance.to(torch.float32, copy=True)  # a copy of its own, worked on in place
    mean, std = _per_channel(rs.band_mean, x.device), _per_channel(rs.band_std, x.device)
    if rs.normalization == "official":
        x.sub_(mean - 2 * std).div_(4 * std).mul_(255.0).clamp_(0.0, 255.0)
        return x.floor_().div_(255.0)  # the official uint8 cast truncates
    return x.sub_(mean).div_(std).mul_(valid[:, None])


def resize_rs(x: torch.Tensor, size: int, interpolation: str) -> torch.Tensor:
    """[N, bands, S, S] -> [N, bands, size, size]; ``area`` averages exactly where S is a
    multiple of ``size`` (antialiased bilinear otherwise)."""
    if x.shape[-1] == size:
        return x
    if interpolation == "area" and x.shape[-1] % size == 0:
        return torch.nn.functional.avg_pool2d(x, x.shape[-1] // size)
    mode = "bicubic" if interpolation == "bicubic" else "bilinear"
    return torch.nn.functional.interpolate(x, size=(size, size), mode=mode,
                                           align_corners=False, antialias=True)


def _per_sample(values: torch.Tensor) -> torch.Tensor:
    """[N] -> [N, 1, 1, 1], to broadcast over [N, C, H, W]."""
    return values[:, None, None, None]


def _grayscale(x: torch.Tensor) -> torch.Tensor:
    """torchvision's luma of [N, 3, H, W] (its weights and order of operations)."""
    r, g, b = x.unbind(dim=-3)
    return r.mul(0.2989).add_(g, alpha=0.587).add_(b, alpha=0.114).unsqueeze(dim=-3)


def _blend(x: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """torchvision's blend of float images in [0, 1], with one factor per sample [N]."""
    factor = _per_sample(factor)
    return x.mul(factor).add_(other.mul(1.0 - factor)).clamp_(0.0, 1.0)


def adjust_brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """torchvision's ``adjust_brightness`` of [N, 3, H, W] in [0, 1], factor per sample."""
    return x.mul(_per_sample(factor)).clamp_(0.0, 1.0)


def adjust_contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """torchvision's ``adjust_contrast``: blend with the image's mean luma, per sample."""
    return _blend(x, _grayscale(x).mean(dim=(-3, -2, -1), keepdim=True), factor)


def adjust_saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """torchvision's ``adjust_saturation``: blend with the luma image, per sample."""
    return _blend(x, _grayscale(x), factor)


OFFICIAL_JITTER_BANDS = (1, 2, 3)
"""Band indices the official code jitters (B03, B04, B05 after its band drop; the
reference notes a probable off-by-one for B02-B04, kept as published)."""


def official_rs_jitter(x: torch.Tensor, brightness: torch.Tensor, contrast: torch.Tensor,
                       contrast_first: torch.Tensor) -> torch.Tensor:
    """torchvision's ``ColorJitter(brightness=0.2, contrast=0.2)`` on the official bands of
    RS inputs [N, bands, H, W] in [0, 1], with each sample's factors [N] applied in its
    order (``contrast_first`` [N] bool), the contrast pivot being the grayscale mean of
    the three bands read as RGB."""
    bands = list(OFFICIAL_JITTER_BANDS)
    part = x[:, bands]
    brightness_first = adjust_contrast(adjust_brightness(part, brightness), contrast)
    contrast_then = adjust_brightness(adjust_contrast(part, contrast), brightness)
    x = x.clone()
    x[:, bands] = torch.where(_per_sample(contrast_first), contrast_then, brightness_first)
    return x


def preprocess_rs(reflectance: torch.Tensor, valid: torch.Tensor, rs: RSContract,
                  augment: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """RS patches as the contract states them (reflectance x 10000 [N, bands, S, S], any
    numeric dtype; ``valid`` [N, S, S]) -> encoder inputs float32 [N, bands, s, s], on
    their device: normalised (:func:`normalize_rs`), resized to the encoder's input (the
    query coordinate is resolution-free, so resizing keeps the alignment), and with
    ``augment`` (:func:`draw_augmentation`) the official brightness/contrast jitter on the
    samples that drew it (official p = 0.7; needs the ``official`` normalisation, whose
    values lie in [0, 1]). No geometric RS augmentation."""
    x = normalize_rs(reflectance, valid, rs)
    x = resize_rs(x, rs.model_input_px, rs.interpolation)
    if augment is not None:
        factors = augment["rs_factors"]
        jittered = official_rs_jitter(x, factors[:, 0], factors[:, 1],
                                      augment["rs_contrast_first"])
        x = torch.where(_per_sample(augment["rs_jittered"]), jittered, x)
    return x


def preprocess_sv(sv: torch.Tensor, contract: SVContract,
                  augment: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """Street views uint8 [N, 3, S, S] (already at the contract's size,
    :func:`resize_sv`) -> encoder inputs float32, on their device: with ``augment``
    (:func:`draw_augmentation`) a horizontal flip and brightness/contrast/saturation
    jitter where drawn, then z-scored on the 0-255 scale as the contract says."""
    x = sv.to(torch.float32, copy=True).div_(255.0)
    if augment is not None:
        x = torch.where(_per_sample(augment["sv_flipped"]), x.flip(-1), x)
        factors = augment["sv_factors"]
        jittered = adjust_saturation(adjust_contrast(adjust_brightness(
            x, factors[:, 0]), factors[:, 1]), factors[:, 2])
        x = torch.where(_per_sample(augment["sv_jittered"]), jittered, x)
    mean, std = _per_channel(contract.mean, x.device), _per_channel(contract.std, x.device)
    return x.mul_(255.0).sub_(mean).div_(std)


def preprocess_batch(batch: dict[str, Any], contract: PreprocessingContract) -> dict[str, Any]:
    """A collated batch of :class:`PairDecoder` outputs -> model inputs, on the batch's
    device: ``rs`` and ``sv`` preprocessed (:func:`preprocess_rs`, :func:`preprocess_sv`,
    with the batch's ``augment`` draws if it has them); ``query``, ``latlon``, ``uuid`` as
    they are; ``valid`` and ``augment`` consumed."""
    augment = batch.get("augment")
    rest = {k: v for k, v in batch.items() if k not in ("rs", "sv", "valid", "augment")}
    return rest | {"rs": preprocess_rs(batch["rs"], batch["valid"], contract.rs, augment),
                   "sv": preprocess_sv(batch["sv"], contract.sv, augment)}


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
