"""The released GAIR checkpoint: conversion, fidelity to its definitions, sharing without pickle."""

from __future__ import annotations

import argparse
import logging
import math
import pathlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import gair
from gair.contract import OFFICIAL_BAND_MEAN, OFFICIAL_BAND_STD, ContractError
from gair.embed import save_pretrained
from gair.embed.__main__ import main as embed_cli
from gair.model import GAIR, GAIRConfig, LocationEncoder
from gair.model.encoders import hf_vit_to_timm
from gair.model.official import official_config
from gair.model.weights import WeightsError
from tests.model.official_layout import UNUSED, official_shapes, official_state_dict
from tests.model.test_croma import reference_croma

SMALL = {"width": 48, "depth": 2, "sv_tokens": 4, "loc_features": 8, "loc_hidden": 32}


def _write(path, state, wrap=True):
    """As a training script writes it: {"model": ..., "args": Namespace}, DDP prefixes."""
    content = {"model": {f"module.{k}": v for k, v in state.items()},
               "args": argparse.Namespace(lr=1.5e-6, input_size=96), "epoch": 155} if wrap else state
    torch.save(content, path)
    return path


@pytest.fixture(scope="module", params=["4", "5"])
def official(request, tmp_path_factory):
    # transformers 4.x names with the training model's extra keys; 5.x names without.
    state = official_state_dict(**SMALL, hf=request.param, training=request.param == "4")
    path = _write(tmp_path_factory.mktemp("official") / "checkpoint.pth", state)
    return state, path


def test_converts_with_nothing_unaccounted(official, caplog):
    state, path = official
    with caplog.at_level(logging.INFO, logger="gair.model.official"):
        model = gair.load_model(path)
    unused = [k for k in state if k.startswith(UNUSED)]
    assert f"{len(unused)} key(s) not used" in caplog.text
    for prefix in ("nerf_fn", "query_feature", "rs_patch_pos_encoding", "radar_proj",
                   "location_proj", "queue_for_location"):
        assert prefix in caplog.text
    used = sum(v.numel() for k, v in state.items() if k not in unused)
    assert sum(p.numel() for p in model.model.parameters()) + sum(
        b.numel() for n, b in model.model.named_buffers() if n.endswith(".b")) == used
    assert model.contract.rs.normalization == "official"
    assert model.contract.rs.patch_size_px == 224, "the official inference window"
    assert model.contract.rs.band_mean == OFFICIAL_BAND_MEAN
    assert model.model.config.nili_offset_scale == "grid"
    assert torch.equal(model.model.sv_proj.weight, state["optical_proj.weight"])
    assert torch.equal(model.model.sv_encoder.pooler.weight, state["sv_encoder.pooler.dense.weight"])


def test_nili_equals_a_hand_computed_query_on_one_hot_tokens(official):
    state, path = official
    model = gair.load_model(path).model
    height = width = 4
    channels = SMALL["width"]
    feat = torch.zeros(1, channels, height, width, dtype=torch.float64)
    for r in range(height):
        for c in range(width):
            feat[0, r * width + c, r, c] = 1.0
    weight, bias = state["imnet.weight"].double(), state["imnet.bias"].double()
    nili = model.nili.double()
    for qx, qy in [(0.1, -0.3), (-0.8, 0.65), (0.5, 0.5)]:
        out = nili(feat, torch.tensor([[[qx, qy]]], dtype=torch.float64))[0, 0]
        # By hand (official HEAD / LIIF): the 4 cells around q, each cell's 3 x 3 unfolded
        # one-hot neighbourhood (unfold order: channel-major, then kernel position),
        # offset (q - centre) x (W, H), blended by the opposite sub-rectangle's area.
        col, row = (qx + 1) / 2 * width - 0.5, (qy + 1) / 2 * height - 0.5
        cells = [(min(max(math.floor(row) + dr, 0), height - 1),
                  min(max(math.floor(col) + dc, 0), width - 1)) for dr in (0, 1) for dc in (0, 1)]
        predictions, areas = [], []
        for r, c in cells:
            unfolded = torch.zeros(channels * 9, dtype=torch.float64)
            for k, (dr, dc) in enumerate((a, b) for a in (-1, 0, 1) for b in (-1, 0, 1)):
                if 0 <= r + dr < height and 0 <= c + dc < width:
                    unfolded[((r + dr) * width + (c + dc)) * 9 + k] = 1.0
            cx, cy = (2 * c + 1) / width - 1, (2 * r + 1) / height - 1
            rel = torch.tensor([(qx - cx) * width, (qy - cy) * height], dtype=torch.float64)
            predictions.append(weight @ torch.cat([unfolded, rel]) + bias)
            areas.append(abs(rel[0] * rel[1]) + 1e-9)
        total = sum(areas)
        expected = sum(p * areas[3 - i] / total for i, p in enumerate(predictions))
        assert torch.allclose(out, expected, atol=1e-8), (qx, qy)


def test_location_embedding_equals_the_encoder_fed_the_same_weights(official):
    state, path = official
    frozen = gair.load_model(path)
    direct = LocationEncoder(embed_dim=SMALL["width"], n_features=SMALL["loc_features"],
                             hidden_dim=SMALL["loc_hidden"], depth=3)
    head = 7  # GeoCLIP: capsule 0 (RFF), 1/3/5 (Linear + ReLU); head.0 after them
    own = {}
    for key, value in state.items():
        if key.startswith("location_encoder."):
            _, branch, part, index, kind = key.split(".")
            index = head if part == "head" else int(index)
            own[f"branches.{branch.removeprefix('LocEnc')}.{index}.{kind}"] = value
    direct.load_state_dict(own)
    latlon = np.array([[48.85, 2.35], [-33.9, 151.2], [1.29, 103.85]], dtype=np.float32)
    expected = F.normalize(direct(torch.from_numpy(latlon)), dim=-1).detach().numpy()
    assert np.allclose(frozen.encode_locations(latlon), expected, atol=1e-6)


def test_rs_through_the_official_preprocessing_equals_a_step_by_step_computation(official):
    _, path = official
    frozen = gair.load_model(path)
    rng = np.random.default_rng(0)
    patch = rng.integers(0, 5000, size=(1, 10, 96, 96)).astype(np.uint16)
    patch[0, :, :3, :3] = 0  # nodata: the official code does not mask it
    grid, pooled = frozen.encode_rs(patch)
    mean = np.array(OFFICIAL_BAND_MEAN)[:, None, None]
    std = np.array(OFFICIAL_BAND_STD)[:, None, None]
    scaled = np.clip((patch[0] - (mean - 2 * std)) / (4 * std) * 255, 0, 255).astype(np.uint8)
    x = torch.from_numpy(scaled / 255.0)[None]  # 96 px already: no resize
    with torch.no_grad():
        tokens = reference_croma(frozen.model.rs_encoder.double(), x)
    assert np.allclose(pooled[0], F.normalize(tokens.mean(1), dim=-1)[0].float().numpy(),
                       atol=1e-5)
    assert np.allclose(grid[0].reshape(SMALL["width"], -1).T, tokens[0].float().numpy(),
                       atol=1e-4)


def test_parameter_counts_per_part_match_the_release():
    shapes = official_shapes()
    meta = {k: torch.empty(s, device="meta") for k, s in shapes.items()}
    with torch.device("meta"):
        model = GAIR(official_config(meta))

    def official(*prefixes):
        return sum(math.prod(s) for k, s in shapes.items() if k.startswith(prefixes))

    counts = {name: sum(p.numel() for p in getattr(model, name).parameters())
              for name in ("rs_encoder", "sv_encoder", "location_encoder", "nili", "sv_proj")}
    assert counts["rs_encoder"] == official("rs_encoder.s2_encoder.") == 85_519_104
    assert counts["sv_encoder"] == official("sv_encoder.") == 86_389_248
    gaussian = sum(math.prod(s) for k, s in shapes.items() if k.endswith("capsule.0.b"))
    assert counts["location_encoder"] == official("location_encoder.") - gaussian
    assert counts["nili"] == official("imnet.") == 5_310_720
    assert counts["sv_proj"] == official("optical_proj.")


def test_hf_names_of_both_transformers_versions_map_to_timm():
    state4 = {k.removeprefix("sv_encoder."): v for k, v in official_state_dict(**SMALL).items()
              if k.startswith("sv_encoder.")}
    state5 = {k.removeprefix("sv_encoder."): v
              for k, v in official_state_dict(**SMALL, hf="5").items() if k.startswith("sv_encoder.")}
    timm4 = hf_vit_to_timm(state4)
    q, k, v = (state4[f"encoder.layer.1.attention.attention.{n}.weight"] for n in ("query", "key", "value"))
    assert torch.equal(timm4["blocks.1.attn.qkv.weight"], torch.cat([q, k, v]))
    assert torch.equal(timm4["blocks.0.mlp.fc2.weight"], state4["encoder.layer.0.output.dense.weight"])
    assert set(timm4) == set(hf_vit_to_timm(state5))


def test_keys_that_do_not_fit_are_listed(tmp_path):
    state = official_state_dict(**SMALL)
    state["imnet.weight"] = torch.zeros(48, 100)
    del state["sv_encoder.pooler.dense.bias"]
    state["sv_encoder.extra.weight"] = torch.zeros(3)
    with pytest.raises(WeightsError) as error:
        gair.load_model(_write(tmp_path / "bad.pth", state))
    message = str(error.value)
    assert "bad.pth" in message
    assert "missing: sv_encoder.pooler.bias" in message
    assert "unexpected: sv_encoder.vit.extra.weight" in message
    assert "nili.imnet.weight [48, 100] (model [48, 434])" in message
    torch.save({"weights": {"a.b": torch.zeros(2)}}, tmp_path / "unknown.pth")
    with pytest.raises(ContractError, match="neither a gair checkpoint"):
        gair.load_model(tmp_path / "unknown.pth")


def test_a_pickled_object_other_than_namespace_is_refused_with_a_way_out(tmp_path):
    torch.save({"model": official_state_dict(**SMALL), "path": pathlib.PurePosixPath("x")},
               tmp_path / "pickled.pth")
    with pytest.raises(WeightsError, match=r"weights_only=True.*re-save only its tensors"):
        gair.load_model(tmp_path / "pickled.pth")


def test_save_pretrained_round_trip_without_pickle(official, tmp_path, monkeypatch):
    _, path = official
    frozen = gair.load_model(path)
    assert embed_cli(["convert", "--checkpoint", str(path), "--output", str(tmp_path / "gair"),
                      "--trained-on", "Streetscapes1M"]) == 0
    assert sorted(p.name for p in (tmp_path / "gair").iterdir()) == [
        "README.md", "config.json", "model.safetensors"]
    card = (tmp_path / "gair" / "README.md").read_text()
    assert "Streetscapes1M" in card and "official GAIR release" in card

    def no_pickle(*args, **kwargs):
        raise AssertionError("torch.load called for a save_pretrained folder")

    monkeypatch.setattr(torch, "load", no_pickle)
    loaded = gair.load_model(tmp_path / "gair")
    latlon = np.array([[10.0, 20.0], [-5.0, 100.0]])
    assert np.array_equal(loaded.encode_locations(latlon), frozen.encode_locations(latlon))
    patch = np.full((1, 10, 96, 96), 1500, dtype=np.uint16)
    assert np.array_equal(loaded.encode_rs(patch)[1], frozen.encode_rs(patch)[1])
    assert loaded.contract == frozen.contract
    with pytest.raises(FileExistsError, match="not empty"):
        save_pretrained(loaded, tmp_path / "gair")


def test_the_gpu_environment_builds_the_published_architecture():
    from kedro.config import OmegaConfigLoader

    from gair.parameters import PretrainParams
    from tests.conftest import PROJECT_ROOT

    loader = OmegaConfigLoader(conf_source=str(PROJECT_ROOT / "conf"), base_env="base",
                               default_run_env="gpu")
    params = PretrainParams(**loader["parameters"]["pretrain"])
    model_cfg = params.model.model_dump(mode="json")
    assert model_cfg["rs_encoder"].pop("weights").endswith("CROMA_base.pt")
    assert params.teachers.rs_weights.endswith("CROMA_base.pt")
    assert params.teachers.sv_weights.endswith("in21k.safetensors")
    assert params.loss.secl_negatives == "queue"
    assert params.preprocessing.rs_normalization == "official"
    assert params.preprocessing.rs_jitter == 0.7
    with torch.device("meta"):  # built, not trained, not loaded
        model = GAIR(GAIRConfig(**model_cfg))
    shapes = official_shapes()

    def official(prefix):
        return sum(math.prod(s) for k, s in shapes.items()
                   if k.startswith(prefix) and not k.endswith("capsule.0.b"))

    def ours(part):
        return sum(p.numel() for p in getattr(model, part).parameters())

    # The training code's CROMA applies its final norm (2 x 768 more than the key table).
    assert ours("rs_encoder") == official("rs_encoder.s2_encoder.") + 2 * 768
    assert len(model.rs_encoder.attn_bias) == 16 and model.rs_encoder.grid_size == 12
    assert ours("sv_encoder") == official("sv_encoder.")
    assert ours("location_encoder") == official("location_encoder.")
    assert ours("nili") == official("imnet.")
    assert ours("sv_proj") == official("optical_proj.")
