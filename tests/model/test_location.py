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
