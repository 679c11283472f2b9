"""NILI: the properties that must hold for the implicit alignment."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gair.model import NILI
from gair.model.nili import cell_centres


def _centre_passthrough(channels: int, dtype=torch.float64) -> NILI:
    """NILI whose imnet returns the centre of the 3 x 3 unfolded feature, unchanged."""
    nili = NILI(channels, channels).to(dtype)
    weight = torch.zeros(channels, channels * 9 + 2, dtype=dtype)
    for c in range(channels):
        weight[c, c * 9 + 4] = 1.0  # F.unfold orders channels as (c, kernel position)
    with torch.no_grad():
        nili.imnet.weight.copy_(weight)
        nili.imnet.bias.zero_()
    return nili


def test_shapes_and_modes():
    feat = torch.randn(2, 8, 6, 6)
    coord = torch.rand(2, 5, 2) * 2 - 1
    assert NILI(8, 16)(feat, coord).shape == (2, 5, 16)
    assert NILI(8, 16, hidden=(32, 32))(feat, coord).shape == (2, 5, 16)
    for mode in ("bilinear", "bicubic"):
        assert NILI(8, 8, mode=mode)(feat, coord).shape == (2, 5, 8)
    with pytest.raises(ValueError, match="out_dim"):
        NILI(8, 16, mode="bilinear")
    with pytest.raises(ValueError, match=r"\[B, Q, 2\]"):
        NILI(8, 8)(feat, coord[0])


def test_local_ensemble_equals_bilinear_sampling_at_interior_points():
    torch.manual_seed(0)
    feat = torch.randn(2, 4, 5, 7, dtype=torch.float64)
    # Inside the hull of the cell centres: |x| <= 1 - 1/W, |y| <= 1 - 1/H.
    coord = (torch.rand(2, 200, 2, dtype=torch.float64) * 2 - 1) * torch.tensor(
        [1 - 1 / 7, 1 - 1 / 5], dtype=torch.float64)
    out = _centre_passthrough(4)(feat, coord)
    reference = F.grid_sample(feat, coord[:, None], mode="bilinear", align_corners=False)
    assert torch.allclose(out, reference[:, :, 0].permute(0, 2, 1), atol=1e-6)


def test_query_at_a_cell_centre_returns_that_cell():
    feat = torch.randn(1, 3, 4, 4, dtype=torch.float64)
    centres = cell_centres(4, 4, dtype=torch.float64)  # [2, H, W] as (x, y)
    coord = centres[:, 1, 2][None, None]  # row 1, column 2
    out = _centre_passthrough(3)(feat, coord)
    assert torch.allclose(out[0, 0], feat[0, :, 1, 2], atol=1e-6)


def test_x_is_columns_and_y_is_rows():
    feat = torch.zeros(1, 1, 5, 5, dtype=torch.float64)
    feat[0, 0, 1, 3] = 1.0  # a north-east cell: second row, fourth column
    centres = cell_centres(5, 5, dtype=torch.float64)
    north_east = centres[:, 1, 3][None, None]
    assert centres[0, 1, 3] > 0 and centres[1, 1, 3] < 0, "x east is +, y north is -"
    assert _centre_passthrough(1)(feat, north_east).item() == pytest.approx(1.0, abs=1e-6)


def test_embeddings_vary_smoothly_across_cells():
    torch.manual_seed(1)
    nili = NILI(8, 16, hidden=(32,)).double()
    feat = torch.randn(1, 8, 6, 6, dtype=torch.float64)
    xs = torch.linspace(-0.8, 0.8, 801, dtype=torch.float64)
    coord = torch.stack([xs, torch.full_like(xs, 0.1)], -1)[None]
    out = nili(feat, coord)[0]
    steps = (out[1:] - out[:-1]).norm(dim=-1)
    # Continuous: no jumps where the query crosses a cell border (steps shrink with spacing).
    assert steps.max() < 10 * steps.median()
    half = nili(feat, coord[:, ::2])[0]
    assert (half[1:] - half[:-1]).norm(dim=-1).max() < 2.5 * steps.max()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_runs_in_any_dtype(dtype):
    nili = NILI(4, 8).to(dtype)
    out = nili(torch.randn(2, 4, 3, 3, dtype=dtype), torch.rand(2, 3, 2, dtype=dtype) * 2 - 1)
    assert out.dtype == dtype and torch.isfinite(out.float()).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_runs_on_cuda():
    nili = NILI(4, 8).cuda()
    out = nili(torch.randn(2, 4, 3, 3, device="cuda"), torch.rand(2, 3, 2, device="cuda") * 2 - 1)
    assert out.device.type == "cuda"


def test_gradients_flow_to_features_and_imnet():
    nili = NILI(4, 8)
    feat = torch.randn(1, 4, 3, 3, requires_grad=True)
    nili(feat, torch.rand(1, 5, 2) * 2 - 1).sum().backward()
    assert feat.grad.abs().sum() > 0 and nili.imnet.weight.grad.abs().sum() > 0


def test_half_grid_offsets_equal_the_official_scale_with_halved_offset_weights():
    # Checkpoints written before the official scale fed (q - c) x (W/2, H/2): the same
    # outputs come from the official (q - c) x (W, H) with the offset columns halved.
    torch.manual_seed(0)
    feat = torch.randn(2, 4, 5, 6, dtype=torch.float64)
    coord = torch.rand(2, 30, 2, dtype=torch.float64) * 2 - 1
    legacy = NILI(4, 8, offset_scale="half_grid").double()
    official = NILI(4, 8).double()
    with torch.no_grad():
        official.imnet.weight.copy_(legacy.imnet.weight)
        official.imnet.bias.copy_(legacy.imnet.bias)
        official.imnet.weight[:, -2:] /= 2
    assert torch.allclose(legacy(feat, coord), official(feat, coord), atol=1e-10)
    with torch.no_grad():
        official.imnet.weight[:, -2:] *= 2
    assert not torch.allclose(legacy(feat, coord), official(feat, coord), atol=1e-3)


def test_nili_keeps_cells_and_offsets_in_float32_under_bf16_autocast():
    """Under bf16-mixed the token grid arrives in bf16; the query coordinate must not
    follow it (1/256 steps pick the wrong cell near the border: cosine to fp32 fell to
    -0.16 before), and points a tenth of a cell apart stay as far apart as in fp32."""
    torch.manual_seed(0)
    nili = NILI(64, 64)
    grid = torch.randn(8, 64, 12, 12).bfloat16()
    coord = torch.rand(8, 200, 2) * 2 - 1
    near = torch.tensor([[[0.9, 0.9], [0.9 + 0.2 / 12, 0.9]]])
    with torch.no_grad():
        exact, exact_near = nili(grid.float(), coord), nili(grid[:1].float(), near)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed, mixed_near = nili(grid, coord), nili(grid[:1], near)
    mixed, mixed_near = mixed.float(), mixed_near.float()
    assert torch.nn.functional.cosine_similarity(mixed, exact, dim=-1).min() >= 0.999
    gap = (exact_near[0, 0] - exact_near[0, 1]).norm()
    assert (mixed_near[0, 0] - mixed_near[0, 1]).norm() == pytest.approx(float(gap), rel=0.01)
