"""The CROMA encoder: 2D-ALiBi by hand, the forward pass from its definition, weights."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from gair.model.croma import CROMAEncoder, alibi_2d, alibi_slopes
from gair.model.weights import WeightsError
from tests.model.official_layout import croma_release, official_shapes

R2, R5, R8 = math.sqrt(2), math.sqrt(5), math.sqrt(8)


def test_alibi_on_a_2x2_grid_by_hand():
    # Two heads: start = ratio = 2^(-2^-(log2(2) - 3)) = 2^-4 -> slopes 1/16, 1/256.
    assert alibi_slopes(2) == [1 / 16, 1 / 256]
    # Tokens row-major: (0,0) (0,1) (1,0) (1,1).
    distance = torch.tensor([[0, 1, 1, R2], [1, 0, R2, 1], [1, R2, 0, 1], [R2, 1, 1, 0]])
    expected = torch.stack([-distance / 16, -distance / 256])
    assert torch.allclose(alibi_2d(2, 2, 2), expected, atol=1e-7)


def test_alibi_on_a_3x3_grid_by_hand():
    # 16 heads (CROMA): start = ratio = 2^-0.5, slope_h = 2^(-(h + 1) / 2).
    slopes = alibi_slopes(16)
    assert slopes == pytest.approx([2 ** (-(h + 1) / 2) for h in range(16)])
    # Tokens (r, c) row-major: 0 (0,0) 1 (0,1) 2 (0,2) 3 (1,0) ... 8 (2,2).
    distance = torch.tensor([
        [0, 1, 2, 1, R2, R5, 2, R5, R8],
        [1, 0, 1, R2, 1, R2, R5, 2, R5],
        [2, 1, 0, R5, R2, 1, R8, R5, 2],
        [1, R2, R5, 0, 1, 2, 1, R2, R5],
        [R2, 1, R2, 1, 0, 1, R2, 1, R2],
        [R5, R2, 1, 2, 1, 0, R5, R2, 1],
        [2, R5, R8, 1, R2, R5, 0, 1, 2],
        [R5, 2, R5, R2, 1, R2, 1, 0, 1],
        [R8, R5, 2, R5, R2, 1, 2, 1, 0],
    ])
    bias = alibi_2d(16, 3, 3)
    assert bias.shape == (16, 9, 9)
    for head in (0, 7, 15):
        assert torch.allclose(bias[head], -slopes[head] * distance, atol=1e-6)


def test_slopes_for_a_head_count_that_is_not_a_power_of_two():
    # ALiBi: the 8 slopes of 8 heads, then every other slope of 16 heads.
    assert alibi_slopes(12) == alibi_slopes(8) + alibi_slopes(16)[0::2][:4]


def _tiny(**kwargs) -> CROMAEncoder:
    torch.manual_seed(0)
    return CROMAEncoder(**({"img_size": 24, "in_chans": 3, "patch_size": 8, "embed_dim": 32,
                            "depth": 2, "num_heads": 4} | kwargs)).double().eval()


def test_linear_patch_embedding_is_a_channel_major_conv():
    encoder = _tiny()
    x = torch.randn(2, 3, 24, 24, dtype=torch.float64)
    weight = encoder.linear_input.weight.view(32, 3, 8, 8)  # "c i j" reshapes to a conv kernel
    conv = F.conv2d(x, weight, encoder.linear_input.bias, stride=8).flatten(2).transpose(1, 2)
    assert torch.allclose(encoder.linear_input(encoder.patchify(x)), conv, atol=1e-10)


def reference_croma(encoder: CROMAEncoder, x: torch.Tensor) -> torch.Tensor:
    """The CROMA forward pass written from its definition, one operation at a time."""
    p, heads = encoder.patch_size, len(encoder.attn_bias)
    batch, _, size, _ = x.shape
    n = size // p
    patches = [x[:, :, r * p:(r + 1) * p, c * p:(c + 1) * p].reshape(batch, -1)
               for r in range(n) for c in range(n)]
    tokens = encoder.linear_input(torch.stack(patches, dim=1))
    slopes = alibi_slopes(heads)
    cells = [(r, c) for r in range(n) for c in range(n)]
    bias = torch.tensor([[[-s * math.dist(a, b) for b in cells] for a in cells] for s in slopes],
                        dtype=x.dtype)
    for attention, ffn in encoder.transformer.layers:
        h = attention.input_norm(tokens)
        q, k, v = (attention.to_qkv.weight.chunk(3)[i] for i in range(3))
        split = lambda t: t.view(batch, n * n, heads, -1).transpose(1, 2)  # noqa: E731
        q, k, v = split(h @ q.T), split(h @ k.T), split(h @ v.T)
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]) + bias
        out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(batch, n * n, -1)
        tokens = tokens + attention.to_out(out)
        h = ffn.input_norm(tokens)
        tokens = tokens + ffn.net[3](F.gelu(ffn.net[0](h)))
    if encoder.transformer.norm_out is not None:
        tokens = encoder.transformer.norm_out(tokens)
    return tokens


@pytest.mark.parametrize("final_norm", [False, True])
def test_forward_equals_the_definition(final_norm):
    encoder = _tiny(final_norm=final_norm)
    x = torch.randn(2, 3, 24, 24, dtype=torch.float64)
    grid, pooled = encoder(x)
    tokens = reference_croma(encoder, x)
    assert grid.shape == (2, 32, 3, 3)
    assert torch.allclose(grid.flatten(2).transpose(1, 2), tokens, atol=1e-9)
    assert torch.allclose(pooled, tokens.mean(1), atol=1e-9)


def test_base_size_has_the_official_rs_encoder_parameter_count():
    official = sum(math.prod(shape) for key, shape in official_shapes().items()
                   if key.startswith("rs_encoder.s2_encoder."))
    with torch.device("meta"):
        encoder = CROMAEncoder()  # CROMA-base defaults, GAIR's 10 bands at 96 px
    assert sum(p.numel() for p in encoder.parameters()) == official == 85_519_104
    assert encoder.attn_bias.shape == (16, 144, 144)
    assert "attn_bias" not in encoder.state_dict(), "computed, not stored"


def test_croma_release_loads_with_a_fresh_patch_projection(tmp_path):
    path = tmp_path / "CROMA_base.pt"
    release = croma_release(width=32, depth=2, bands=12)
    torch.save(release, path)
    encoder = _tiny(in_chans=10)
    fresh = encoder.linear_input.weight.clone()
    encoder.load_weights(path)
    s2 = release["s2_encoder"]
    assert torch.equal(encoder.linear_input.weight, fresh), "12-band projection not forced in"
    for key in ("transformer.layers.1.0.to_qkv.weight", "transformer.layers.0.1.net.3.bias"):
        assert torch.equal(encoder.state_dict()[key].float(), s2[key])
    # With a final norm, CROMA's norm_out is taken too.
    normed = _tiny(in_chans=12, final_norm=True)
    normed.load_weights(path)
    assert torch.equal(normed.transformer.norm_out.weight.float(), s2["transformer.norm_out.weight"])
    assert torch.equal(normed.linear_input.weight.float(), s2["linear_input.weight"])


def test_weights_that_do_not_fit_are_named(tmp_path):
    release = croma_release(width=32, depth=2)
    release["s2_encoder"]["transformer.layers.0.0.to_out.weight"] = torch.zeros(16, 32)
    del release["s2_encoder"]["transformer.layers.1.1.input_norm.bias"]
    path = tmp_path / "broken.pt"
    torch.save(release, path)
    with pytest.raises(WeightsError) as error:
        _tiny().load_weights(path)
    message = str(error.value)
    assert "broken.pt" in message
    assert "transformer.layers.0.0.to_out.weight [16, 32] (model [32, 32])" in message
    assert "missing: transformer.layers.1.1.input_norm.bias" in message
    with pytest.raises(WeightsError, match="no such weights file"):
        _tiny().load_weights(tmp_path / "absent.pt")
    torch.save({"s2_encoder": {"blocks.0.weight": torch.zeros(2)}}, tmp_path / "other.pt")
    with pytest.raises(WeightsError, match="not a CROMA optical encoder"):
        _tiny().load_weights(tmp_path / "other.pt")
