"""The published recipe at toy size: CROMA RS encoder, pooled SV encoder, official
preprocessing and jitter, queue-only SECL, frozen teachers from local files."""

from __future__ import annotations

import random

import pytest
import torch
from torchvision.transforms import v2

import gair
from gair.contract import OFFICIAL_BAND_MEAN, PreprocessingContract
from gair.parameters import PretrainParams
from gair.preprocessing import OFFICIAL_JITTER_BANDS, official_rs_jitter
from gair.training import run_pretraining
from gair.training.system import GAIRPretraining
from tests.model.official_layout import croma_release, official_state_dict
from tests.training.conftest import TINY_MODEL, tiny_pretrain_params


@pytest.fixture(scope="module")
def teacher_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("teachers")
    torch.save(croma_release(width=32, depth=1, bands=12), folder / "CROMA_base.pt")
    # An ImageNet-21k ViT in Hugging Face's layout (as the official teacher is read).
    sv = {k: v for k, v in official_state_dict(width=32, depth=1, sv_tokens=4, sv_patch=8,
                                               loc_features=4, loc_hidden=8).items()
          if k.startswith("sv_encoder.")}
    torch.save({k.replace("sv_encoder.", "vit.", 1): v for k, v in sv.items()},
               folder / "vit_in21k.pth")
    return folder


def _published(teacher_files, **trainer) -> dict:
    croma = str(teacher_files / "CROMA_base.pt")
    model = TINY_MODEL | {
        "rs_encoder": {"name": "croma", "img_size": 16, "patch_size": 8, "embed_dim": 32,
                       "depth": 1, "num_heads": 4, "final_norm": True, "weights": croma},
        "sv_encoder": TINY_MODEL["sv_encoder"] | {"pooler": True, "layer_norm_eps": 1e-12,
                                                  "attn_drop_rate": 0.1},
    }
    params = tiny_pretrain_params(**trainer)
    return params | {
        "model": model,
        "loss": {"queue_size": 8, "secl_negatives": "queue"},
        "preprocessing": {"rs_normalization": "official", "rs_interpolation": "bicubic",
                          "sv_interpolation": "bicubic", "rs_jitter": 0.7},
        "teachers": {"sv_weights": str(teacher_files / "vit_in21k.pth"), "rs_weights": croma},
    }


def test_the_rs_teacher_is_a_frozen_copy_of_the_initial_encoder(teacher_files):
    params = PretrainParams(**_published(teacher_files))
    system = GAIRPretraining.from_params(params)
    student, teacher = system.model.rs_encoder.state_dict(), system.teachers.rs.state_dict()
    assert student.keys() == teacher.keys()
    assert all(torch.equal(student[k], teacher[k]) for k in student), "same start, patch embed too"
    assert not any(p.requires_grad for p in system.teachers.parameters())
    system.train()
    assert not system.teachers.training, "teachers stay in eval mode"


def test_published_recipe_trains_and_its_checkpoint_loads(tiny_shards, teacher_files, tmp_path):
    run_dir = tmp_path / "run"
    params = PretrainParams(**_published(teacher_files, max_epochs=1), run_dir=str(run_dir))
    summary = run_pretraining({"shards_dir": str(tiny_shards), "run_dir": str(run_dir),
                               "params": params.model_dump(mode="json")})
    for term in ("train/incl", "train/secl_sv", "train/distill_sv", "train/distill_rs"):
        assert term in summary["metrics"], term
    assert -1.0 <= summary["metrics"]["train/distill_sv"] <= 1.0
    assert summary["band_mean"] == list(OFFICIAL_BAND_MEAN)
    path = summary["last_checkpoint"]
    content = torch.load(path, map_location="cpu", weights_only=True)
    # Teachers are rebuilt from their files; only what no file holds is stored.
    assert sorted(k for k in content["state_dict"] if k.startswith("teachers.")) == [
        "teachers.rs.linear_input.bias", "teachers.rs.linear_input.weight"]
    contract = PreprocessingContract.from_dict(content["gair_contract"])
    assert contract.rs.normalization == "official" and contract.rs.interpolation == "bicubic"
    assert contract.sv.interpolation == "bicubic"
    # Resuming rebuilds the teachers from their files and loads strictly, the stored
    # patch projection included.
    restored = GAIRPretraining.load_from_checkpoint(path, map_location="cpu")
    assert torch.equal(restored.teachers.rs.linear_input.weight,
                       content["state_dict"]["teachers.rs.linear_input.weight"])
    # The trained model stands alone: its initialisation files are not needed to load it.
    (teacher_files / "CROMA_base.pt").rename(tmp_path / "moved.pt")
    try:
        frozen = gair.load_model(path)
        assert frozen.model.config.rs_encoder.name == "croma"
        assert frozen.model.config.rs_encoder.weights is None
        gair.embed.random_like(frozen, 1)
    finally:
        (tmp_path / "moved.pt").rename(teacher_files / "CROMA_base.pt")
    old = content | {"hyper_parameters": content["hyper_parameters"] | {
        "model": {k: v for k, v in content["hyper_parameters"]["model"].items()
                  if k != "nili_offset_scale"}}}
    torch.save(old, tmp_path / "old.ckpt")
    with pytest.raises(ValueError, match="official scale"):
        GAIRPretraining.load_from_checkpoint(tmp_path / "old.ckpt", map_location="cpu")


def test_official_jitter_is_torchvision_color_jitter_on_three_bands():
    """Batched, with each sample's factors and order, as ColorJitter on each sample."""
    x = torch.rand(6, 10, 8, 8)
    draws = [random.Random(seed) for seed in range(len(x))]
    factors = [(draw.uniform(0.8, 1.2), draw.uniform(0.8, 1.2), draw.random() < 0.5)
               for draw in draws]
    brightness, contrast, contrast_first = (torch.tensor(column) for column in zip(*factors, strict=True))
    out = official_rs_jitter(x, brightness.float(), contrast.float(), contrast_first)
    bands = list(OFFICIAL_JITTER_BANDS)
    others = [b for b in range(10) if b not in bands]
    assert contrast_first.any() and not contrast_first.all(), "both orders are exercised"
    for n, (b, c, first) in enumerate(factors):
        expected = x[n, bands]
        for step in (["c", "b"] if first else ["b", "c"]):
            jitter = v2.ColorJitter(brightness=(b, b)) if step == "b" else \
                v2.ColorJitter(contrast=(c, c))
            expected = jitter(expected)
        assert torch.allclose(out[n, bands], expected, atol=1e-6)
        assert torch.equal(out[n, others], x[n, others])


def test_jitter_and_band_statistics_need_the_official_normalisation():
    with pytest.raises(ValueError, match="rs_normalization: official"):
        PretrainParams(**(tiny_pretrain_params() | {"preprocessing": {"rs_jitter": 0.7}}))
    with pytest.raises(ValueError, match="rs_band_mean is used by rs_normalization: official"):
        PretrainParams(**(tiny_pretrain_params() | {"preprocessing": {"rs_band_mean": [1.0]}}))
