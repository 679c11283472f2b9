from __future__ import annotations

import pytest
import torch

from gair.model import LocationEncoder, equal_earth_projection


@pytest.mark.parametrize(
    ("latlon", "xy"),
    [((0.0, 0.0), (0.0, 0.0)), ((0.0, 180.0), (1.0, 0.0)), ((0.0, -180.0), (-1.0, 0.0)),
     ((90.0, 0.0), (0.0, 0.486717)), ((-90.0, 0.0), (0.0, -0.486717))],
)
def test_equal_earth_values(latlon, xy):
    out = equal_earth_projection(torch.tensor(latlon, dtype=torch.float64))
    assert out.tolist() == pytest.approx(xy, abs=1e-6)


def test_equal_earth_rejects_wrong_shape():
    with pytest.raises(ValueError, match="lat, lon"):
        equal_earth_projection(torch.zeros(4, 3))


def test_location_encoder_shapes_state_and_determinism():
    encoder = LocationEncoder(embed_dim=32, n_features=16, hidden_dim=24, depth=2, seed=3)
    out = encoder(torch.tensor([[48.7, 9.2], [-23.5, -46.6], [1.35, 103.8]]))
    assert out.shape == (3, 32) and torch.isfinite(out).all()
    buffers = [k for k in encoder.state_dict() if k.endswith(".b")]
    assert len(buffers) == 3, "the fixed Gaussian matrices travel with the weights"
    sigmas = [encoder.state_dict()[k].std().item() for k in buffers]
    assert sigmas[0] < sigmas[1] < sigmas[2]
    again = LocationEncoder(embed_dim=32, n_features=16, hidden_dim=24, depth=2, seed=3)
    assert all(torch.equal(encoder.state_dict()[k], again.state_dict()[k]) for k in buffers)
    assert all(not p.requires_grad for n, p in encoder.named_buffers())


def test_geoclip_release_loads_with_fresh_heads_of_another_width(tmp_path):
    # GeoCLIP's location_encoder_weights.pth: LocEnc{i}.capsule.{0.b,1,3,5}, LocEnc{i}.head.0
    # with 512-wide heads; GAIR's heads are wider, so they keep their fresh initialisation.
    generator = torch.Generator().manual_seed(0)
    release = {}
    for i in range(3):
        release[f"LocEnc{i}.capsule.0.b"] = torch.randn(16, 2, generator=generator)
        for k, fan_in in ((1, 32), (3, 24), (5, 24)):
            release[f"LocEnc{i}.capsule.{k}.weight"] = torch.randn(24, fan_in, generator=generator)
            release[f"LocEnc{i}.capsule.{k}.bias"] = torch.randn(24, generator=generator)
        release[f"LocEnc{i}.head.0.weight"] = torch.randn(20, 24, generator=generator)
        release[f"LocEnc{i}.head.0.bias"] = torch.randn(20, generator=generator)
    torch.save(release, tmp_path / "location_encoder_weights.pth")
    torch.manual_seed(5)
    fresh = LocationEncoder(embed_dim=32, n_features=16, hidden_dim=24, depth=3)
    head = fresh.branches[1][7].weight.clone()
    torch.manual_seed(5)
    loaded = LocationEncoder(embed_dim=32, n_features=16, hidden_dim=24, depth=3,
                             weights=str(tmp_path / "location_encoder_weights.pth"))
    assert torch.equal(loaded.branches[2][0].b, release["LocEnc2.capsule.0.b"])
    assert torch.equal(loaded.branches[0][5].weight, release["LocEnc0.capsule.5.weight"])
    assert torch.equal(loaded.branches[1][7].weight, head), "head: fresh, same seed"
    same_width = LocationEncoder(embed_dim=20, n_features=16, hidden_dim=24, depth=3,
                                 weights=str(tmp_path / "location_encoder_weights.pth"))
    assert torch.equal(same_width.branches[1][7].weight, release["LocEnc1.head.0.weight"])


def test_location_embeddings_keep_their_precision_under_bf16_autocast():
    """bf16-mixed is the GPU default: under autocast the Fourier features of points 100 m
    and 1 km apart must differ as they do in float32 (in bf16 they round together)."""
    torch.manual_seed(0)
    encoder = LocationEncoder(embed_dim=128, hidden_dim=256, seed=0)
    for module in encoder.modules():
        if isinstance(module, torch.nn.Linear):  # trained-like weights, not near-zero heads
            torch.nn.init.normal_(module.weight, std=module.in_features ** -0.5)
    points = torch.tensor([[48.0, 9.0], [48.0009, 9.0], [48.009, 9.0]], dtype=torch.float64)
    with torch.no_grad():
        exact = encoder(points)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = encoder(points)
    cosine = torch.nn.functional.cosine_similarity
    assert (cosine(mixed.float(), exact, dim=-1) >= 0.999).all()
    for far in (1, 2):  # 100 m and 1 km from the first point
        exact_gap = 1 - cosine(exact[0], exact[far], dim=0)
        mixed_gap = 1 - cosine(mixed[0].float(), mixed[far].float(), dim=0)
        assert exact_gap > 0
        assert float(mixed_gap) == pytest.approx(float(exact_gap), rel=0.01)
    assert mixed.dtype == torch.float32
