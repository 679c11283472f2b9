"""Preprocessing of GAIR's inputs, the one of training, validation, evaluation
(``gair.evaluation.embeddings``) and the embedding API (``gair.embed``); no Lightning, so
``gair.load_model`` stays light.

A stored sample is decoded into compact tensors (:class:`PairDecoder`: the street view
decoded and resized in uint8, the RS patch as stored, uint16, and the sample's random
augmentation draws). Normalisation, RS resizing and augmentation then run on whole batches
wherever the batch is, the accelerator in training: :func:`preprocess_rs` and
:func:`preprocess_sv` (both: :func:`preprocess_batch`).
"""

from __future__ import annotations

import functools
import random
from collections.abc import Sequence
from typing import Any

import torch
from torchvision.transforms.v2 import functional as TF

from gair.contract import PreprocessingContract, RSContract, SVContract
from gair.io.shards import EncodedSample, decode_patch, decode_sv

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
