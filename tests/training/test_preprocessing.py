"""Batched preprocessing on the device gives what the per-sample CPU transform gave.

The oracle is the per-sample transform training used before batches were preprocessed on
the device (``PairTransform``, copied below as it was). RS inputs agree to float rounding.
Street views are now resized in uint8 on the CPU instead of as floats: on the same resized
pixels everything else agrees to float rounding, and the resize itself is measured here.
"""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import default_collate
from torchvision.transforms.v2 import functional as TF

from gair.contract import PreprocessingContract, SVContract
from gair.io.shards import decode_sample, read_encoded_shard
from gair.preprocessing import PairDecoder, preprocess_batch, resize_sv
from gair.training.data import band_statistics
from tests.training.conftest import TINY_MODEL

# ---- the oracle: the per-sample transform as it was (gair.training.data before the change)

_INTERPOLATION = {"bilinear": TF.InterpolationMode.BILINEAR,
                  "bicubic": TF.InterpolationMode.BICUBIC}


def _old_normalize_rs(reflectance, valid, rs):
    mean = torch.tensor(rs.band_mean, dtype=torch.float32)[:, None, None]
    std = torch.tensor(rs.band_std, dtype=torch.float32)[:, None, None]
    if rs.normalization == "official":
        low = mean - 2 * std
        scaled = ((reflectance - low) / (4 * std) * 255.0).clamp(0.0, 255.0)
        return torch.floor(scaled) / 255.0
    return (reflectance - mean) / std * valid[None]


def _old_resize_rs(x, size, interpolation):
    if x.shape[-1] == size:
        return x
    if interpolation == "area" and x.shape[-1] % size == 0:
        return torch.nn.functional.avg_pool2d(x[None], x.shape[-1] // size)[0]
    mode = "bicubic" if interpolation == "bicubic" else "bilinear"
    return torch.nn.functional.interpolate(x[None], size=(size, size), mode=mode,
                                           align_corners=False, antialias=True)[0]


def _old_official_rs_jitter(x, rng):
    bands = [1, 2, 3]
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


class OldPairTransform:
    def __init__(self, contract, train, rs_jitter=0.0):
        self.contract, self.train, self.rs_jitter = contract, train, rs_jitter
        self.sv_mean = torch.tensor(contract.sv.mean)[:, None, None]
        self.sv_std = torch.tensor(contract.sv.std)[:, None, None]

    def rs(self, reflectance, valid, rng=None):
        contract = self.contract.rs
        x = _old_normalize_rs(torch.from_numpy(reflectance.astype(np.float32)),
                              torch.from_numpy(valid), contract)
        x = _old_resize_rs(x, contract.model_input_px, contract.interpolation)
        if self.train and rng is not None and self.rs_jitter and rng.random() < self.rs_jitter:
            x = _old_official_rs_jitter(x, rng)
        return x

    def sv(self, image, rng=None):
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

    def __call__(self, sample, rng=None):
        return {"rs": self.rs(sample["rs"], sample["valid"], rng),
                "sv": self.sv(sample["sv"], rng)}

# ---- the tests


def _contracts(shards) -> dict[str, tuple[PreprocessingContract, float]]:
    """The CPU default (z-score, area, bilinear) and the published recipe (official
    normalisation, bicubic both, RS jitter 0.7), with an RS resize that is no pooling."""
    mean, std = band_statistics(sorted(shards.rglob("*.tar")), 16)
    official = {"rs_normalization": "official", "rs_interpolation": "bicubic",
                "sv_interpolation": "bicubic"}
    return {
        "default": (PreprocessingContract.for_training(mean, std, 32, TINY_MODEL), 0.0),
        "published": (PreprocessingContract.for_training(mean, std, 32, TINY_MODEL, official), 0.7),
        "bilinear_rs": (PreprocessingContract.for_training(
            mean, std, 32, TINY_MODEL | {"rs_encoder": TINY_MODEL["rs_encoder"] | {"img_size": 24}},
            {"rs_interpolation": "bilinear"}), 0.0),
    }


def _samples(shards, count=24):
    encoded = [s for shard in sorted(shards.rglob("*.tar")) for s in read_encoded_shard(shard)]
    return encoded[:count]


def _rng(sample):
    return random.Random(sample.key)


def _batch(decoder, samples):
    return preprocess_batch(default_collate([decoder(s, _rng(s)) for s in samples]),
                            decoder.contract)


def _pil(image: torch.Tensor) -> Image.Image:
    return Image.fromarray(image.permute(1, 2, 0).numpy())


def _levels(difference: torch.Tensor, sv: SVContract) -> torch.Tensor:
    """A difference of normalised SV inputs in levels of the 0-255 scale."""
    return difference.abs() * torch.tensor(sv.std)[:, None, None]


@pytest.mark.parametrize("name", ["default", "published", "bilinear_rs"])
@pytest.mark.parametrize("train", [False, True])
def test_rs_inputs_match_the_per_sample_transform(tiny_shards, name, train):
    contract, rs_jitter = _contracts(tiny_shards)[name]
    samples = _samples(tiny_shards)
    batch = _batch(PairDecoder(contract, train, rs_jitter), samples)
    oracle = OldPairTransform(contract, train, rs_jitter)
    jittered = 0
    for n, sample in enumerate(samples):
        decoded = decode_sample(sample, contract.sv.size_px)
        expected = oracle.rs(decoded["rs"], decoded["valid"], _rng(sample))
        assert batch["rs"][n].shape == expected.shape
        torch.testing.assert_close(batch["rs"][n], expected, rtol=1e-5, atol=1e-6)
        jittered += not torch.allclose(expected, oracle.rs(decoded["rs"], decoded["valid"]))
    assert (jittered > 0) == (train and rs_jitter > 0), "the jitter was exercised"


@pytest.mark.parametrize("name", ["default", "published"])
@pytest.mark.parametrize("train", [False, True])
def test_sv_inputs_match_on_the_same_resized_pixels(tiny_shards, name, train):
    """Flip, jitter and normalisation on the batch equal the per-sample transform given
    the uint8 resized street view (its own resize is then the identity)."""
    contract, rs_jitter = _contracts(tiny_shards)[name]
    samples = _samples(tiny_shards)
    batch = _batch(PairDecoder(contract, train, rs_jitter), samples)
    oracle = OldPairTransform(contract, train, rs_jitter)
    augmented = 0
    for n, sample in enumerate(samples):
        decoded = decode_sample(sample, contract.sv.size_px)
        resized = _pil(resize_sv(decoded["sv"], contract.sv))
        rng = _rng(sample)
        oracle.rs(decoded["rs"], decoded["valid"], rng)  # the RS draws come first
        expected = oracle.sv(resized, rng)
        torch.testing.assert_close(batch["sv"][n], expected, rtol=1e-5, atol=1e-5)
        augmented += not torch.allclose(expected, oracle.sv(resized))
    assert (augmented > 0) == train


@pytest.mark.parametrize("name", ["default", "published"])
def test_validation_sv_inputs_differ_from_float_resizing_by_uint8_rounding(tiny_shards, name):
    """End to end against the per-sample float resize: within a level of 255 (bilinear),
    a few levels where bicubic overshoots (clipped in uint8); about a third of a level on
    average either way."""
    contract, _ = _contracts(tiny_shards)[name]
    samples = _samples(tiny_shards)
    batch = _batch(PairDecoder(contract, False), samples)
    oracle = OldPairTransform(contract, False)
    expected = torch.stack([oracle.sv(_pil(decode_sample(s, contract.sv.size_px)["sv"]))
                            for s in samples])
    levels = _levels(batch["sv"] - expected, contract.sv)
    bound = 1.0 if contract.sv.interpolation == "bilinear" else 8.0
    assert levels.max() <= bound + 1e-3
    assert levels.mean() <= 0.4


def _photo(width=160, height=120, seed=0) -> Image.Image:
    """A photo-like RGB image: smooth shading, texture and sharp-edged shapes."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    image = 90 + 60 * np.sin(6 * x[..., None] + rng.uniform(0, 6, 3)) * np.cos(4 * y[..., None])
    image = image + rng.normal(0, 12, (height, width, 3))
    for _ in range(12):
        top, left = rng.integers(0, height - 10), rng.integers(0, width - 10)
        image[top : top + rng.integers(4, 40), left : left + rng.integers(4, 40)] = rng.uniform(0, 255, 3)
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))


@pytest.mark.parametrize(("interpolation", "size", "max_levels"),
                         [("bilinear", 64, 1.0), ("bicubic", 64, 8.0), ("bicubic", 112, 8.0)])
def test_uint8_resize_against_float_resize(interpolation, size, max_levels):
    """The street-view resize in uint8 against the former float resize, in levels of
    255: at most one level for bilinear; bicubic overshoot beyond [0, 255] at sharp edges
    is clipped (between its two passes too), a few levels there; on average a third of a
    level."""
    image = _photo()
    jpeg = io.BytesIO()
    image.save(jpeg, format="JPEG", quality=90)
    image = TF.pil_to_tensor(Image.open(jpeg))
    resized = resize_sv(image, SVContract(size_px=size, interpolation=interpolation)).float()
    floats = TF.resize(image.float(), [size, size],
                       interpolation=_INTERPOLATION[interpolation], antialias=True)
    difference = (resized - floats).abs()
    assert difference.max() <= max_levels
    assert difference.mean() <= 0.4
    inside = (floats >= 0) & (floats <= 255)
    assert (difference[inside] <= 1.0).float().mean() >= 0.99, "off by one level at most, nearly everywhere"
