"""SV/RS encoders from local weight files: timm and Hugging Face layouts, heads, misfits."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from gair.model.croma import CROMAEncoder
from gair.model.encoders import RSEncoder, SVEncoder, build_rs_encoder
from gair.model.weights import WeightsError
from tests.model.official_layout import official_state_dict

VIT = {"name": "vit_tiny_patch16_224", "img_size": 16, "patch_size": 8, "depth": 1,
       "embed_dim": 32, "num_heads": 2}


def _hf_file(tmp_path, hf="4"):
    state = official_state_dict(width=32, depth=1, sv_tokens=4, sv_patch=8, loc_features=4,
                                loc_hidden=8, hf=hf)
    sv = {k.removeprefix("sv_encoder."): v for k, v in state.items() if k.startswith("sv_encoder.")}
    path = tmp_path / f"vit_hf{hf}.safetensors"
    save_file(sv | {"classifier.weight": torch.zeros(5, 32)}, str(path))
    return sv, path


@pytest.mark.parametrize("hf", ["4", "5"])
def test_sv_encoder_reads_a_hugging_face_vit_with_its_pooler(tmp_path, hf):
    sv, path = _hf_file(tmp_path, hf)
    encoder = SVEncoder(**VIT, pooler=True, layer_norm_eps=1e-12, weights=str(path)).eval()
    assert torch.equal(encoder.pooler.weight, sv["pooler.dense.weight"])
    assert torch.equal(encoder.vit.pos_embed, sv["embeddings.position_embeddings"])
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        tokens = encoder.vit.forward_features(x)
        expected = torch.tanh(tokens[:, 0] @ sv["pooler.dense.weight"].T + sv["pooler.dense.bias"])
        assert torch.allclose(encoder(x), expected, atol=1e-6)
    assert encoder.vit.norm.eps == 1e-12


def test_sv_encoder_reads_timm_files_and_ignores_classifier_heads(tmp_path):
    source = SVEncoder(**VIT)
    state = source.vit.state_dict() | {"head.weight": torch.zeros(10, 32),
                                       "head.bias": torch.zeros(10)}
    torch.save(state, tmp_path / "timm.pth")
    loaded = SVEncoder(**VIT, weights=str(tmp_path / "timm.pth"))
    x = torch.randn(1, 3, 16, 16)
    assert torch.allclose(loaded.eval()(x), source.eval()(x))
    with pytest.raises(WeightsError, match=r"missing: pooler.bias, pooler.weight"):
        SVEncoder(**VIT, pooler=True, weights=str(tmp_path / "timm.pth"))
    with pytest.raises(WeightsError, match=r"wrong shape: vit.pos_embed"):
        SVEncoder(**(VIT | {"img_size": 32}), weights=str(tmp_path / "timm.pth"))


def test_rs_encoders_by_name_and_a_timm_rs_file_with_another_band_count(tmp_path):
    assert isinstance(build_rs_encoder({"name": "croma", "img_size": 16, "embed_dim": 32,
                                        "depth": 1, "num_heads": 4}), CROMAEncoder)
    rs = build_rs_encoder(VIT | {"in_chans": 10})
    assert isinstance(rs, RSEncoder)
    twelve = RSEncoder(**VIT, in_chans=12)
    torch.save(twelve.vit.state_dict(), tmp_path / "rs12.pth")
    ten = RSEncoder(**VIT, in_chans=10, weights=str(tmp_path / "rs12.pth"))
    assert ten.vit.patch_embed.proj.weight.shape[1] == 10
    assert not torch.equal(ten.vit.patch_embed.proj.bias, twelve.vit.patch_embed.proj.bias), \
        "the projection's bias is re-initialised with its weight"
    assert torch.equal(ten.vit.blocks[0].attn.qkv.weight, twelve.vit.blocks[0].attn.qkv.weight)
