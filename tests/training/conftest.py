"""Tiny shards and a tiny model configuration for training tests."""

from __future__ import annotations

import pytest

from gair.io.directories import replace_directory
from gair.io.shards import ExtractionSettings, extract_shards
from tests.io.test_shards import _candidates

TINY_MODEL = {
    "embed_dim": 16,
    "rs_encoder": {"name": "vit_tiny_patch16_224", "img_size": 16, "patch_size": 8, "depth": 1,
                   "embed_dim": 32, "num_heads": 2},
    "sv_encoder": {"name": "vit_tiny_patch16_224", "img_size": 16, "patch_size": 8, "depth": 1,
                   "embed_dim": 32, "num_heads": 2},
    "location_encoder": {"sigmas": [1.0, 16.0], "n_features": 8, "hidden_dim": 16, "depth": 1},
}


def tiny_pretrain_params(**trainer) -> dict:
    return {
        "seed": 0, "resume": True, "model": TINY_MODEL,
        "loss": {"queue_size": 8},
        "optimizer": {"blr": 1e-3, "warmup_epochs": 1},
        "data": {"batch_size": 4, "num_workers": 0, "shuffle_buffer": 8, "band_stats_samples": 16},
        "trainer": {"max_epochs": 2, "accelerator": "cpu", "devices": 1,
                    "log_every_n_steps": 1, "limit_train_batches": 4} | trainer,
        "checkpoint": {"monitor": "val/r@1", "mode": "max"},
    }


def tiny_evaluate_params(run_dir: str) -> dict:
    """Evaluation sized for the small world: two seeds, one baseline, few task items."""
    return {
        "run_dir": run_dir, "seeds": [0, 1],
        "baselines": {"incl_only": {"loss.weight_secl_sv": 0.0, "loss.weight_secl_rs": 0.0}},
        "batch_size": 16, "retrieval_examples": 2,
        "tasks": {"patch_stride_px": 16, "points_per_tile": 100, "gallery_spacing_m": 200.0,
                  "labels_per_class": None},
    }


@pytest.fixture(scope="session")
def tiny_shards(small_world, tmp_path_factory):
    candidates, tiles = _candidates(small_world)
    directory = tmp_path_factory.mktemp("train") / "shards"

    def write(staging):
        samples, rejects = extract_shards(
            candidates, tiles, small_world["sentinel2"], small_world["streetscapes"], staging,
            ExtractionSettings(32, 0.5, 24, 85), samples_per_shard=6, workers=1)
        samples.to_parquet(staging / "samples.parquet", index=False)
        rejects.to_csv(staging / "rejects.csv", index=False)
        return {}

    replace_directory(directory, write)
    return directory
