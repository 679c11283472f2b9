"""Loss values on hand-made inputs, duplicate masking, temperatures and the queue."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from gair.model import GAIRLoss, LossConfig
from gair.model.location import LocationEncoder
from gair.model.losses import location_infonce, queue_infonce, symmetric_infonce


def test_symmetric_infonce_by_hand():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    scale = torch.tensor(math.log(10.0))
    logits = 10 * a @ b.T  # [[10, 6], [0, 8]]
    row = [-math.log(math.exp(10) / (math.exp(10) + math.exp(6))),
           -math.log(math.exp(8) / (math.exp(0) + math.exp(8)))]
    col = [-math.log(math.exp(10) / (math.exp(10) + math.exp(0))),
           -math.log(math.exp(8) / (math.exp(6) + math.exp(8)))]
    expected = 0.5 * (sum(row) / 2 + sum(col) / 2)
    assert logits.tolist() == [[10.0, 6.0], [0.0, 8.0]]
    assert symmetric_infonce(a, b, scale).item() == pytest.approx(expected, rel=1e-6)


def test_location_infonce_masks_the_same_place_as_negative():
    q = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), dim=-1)
    loc = q.clone()
    latlon = torch.tensor([[10.0, 20.0], [30.0, 40.0]])
    queue = torch.tensor([[1.0, 0.0], [0.0, -1.0]])
    queue_latlon = torch.tensor([[10.0, 20.0], [50.0, 60.0]])  # first: item 0's own place
    scale = torch.tensor(0.0)  # scale 1
    loss = location_infonce(q, loc, latlon, queue, queue_latlon, scale)
    # item 0: keys [own 1, item1 0, (masked), queue1 0]; item 1: [0, own 1, 0, -1]
    e = math.e
    expected = 0.5 * (-math.log(e / (e + 1 + 1)) - math.log(e / (1 + e + e**0 + e**-1)))
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_duplicates_in_the_batch_are_not_negatives_either():
    q = F.normalize(torch.randn(3, 4), dim=-1)
    latlon = torch.tensor([[1.0, 2.0], [1.0, 2.0], [5.0, 6.0]])
    masked = location_infonce(q, q, latlon, None, None, torch.tensor(0.0))
    distinct = location_infonce(q, q, latlon + torch.tensor([[0.0, 0.0], [9.0, 9.0], [0.0, 0.0]]),
                                None, None, torch.tensor(0.0))
    assert masked.item() < distinct.item()


def _embeddings(n: int = 6, d: int = 8, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: F.normalize(torch.randn(n, d, generator=g), dim=-1)
            for k in ("sv", "rs_query", "location")}


def test_weights_and_temperatures():
    e = _embeddings()
    latlon = torch.rand(6, 2) * 50
    base = GAIRLoss(LossConfig(queue_size=0))(e, latlon)
    assert base["loss"].item() == pytest.approx(
        base["incl"].item() + 0.5 * base["secl_sv"].item() + 0.5 * base["secl_rs"].item())
    only_incl = GAIRLoss(LossConfig(queue_size=0, weight_secl_sv=0, weight_secl_rs=0))(e, latlon)
    assert only_incl["loss"].item() == pytest.approx(base["incl"].item())
    per_term = GAIRLoss(LossConfig(queue_size=0, shared_temperature=False, learnable_temperature=True))
    assert per_term.logit_scale.shape == (3,) and per_term.logit_scale.requires_grad
    assert per_term.logit_scale[0].item() == pytest.approx(math.log(1 / 0.07))
    fixed = GAIRLoss(LossConfig(queue_size=0))
    assert not fixed.logit_scale.requires_grad


def test_queue_adds_negatives_and_wraps():
    loss = GAIRLoss(LossConfig(queue_size=5)).train()
    encoder = torch.nn.Linear(2, 8)
    for step in range(3):
        latlon = torch.full((2, 2), float(step))
        loss(_embeddings(2, 8, step), latlon, encoder)
    assert loss.queue.filled().shape == (5, 2)
    assert loss.queue.count.item() == 6 and loss.queue.pointer.item() == 1
    assert loss.queue.latlon[0].tolist() == [2.0, 2.0], "the oldest entry was overwritten"


def test_official_secl_uses_the_queue_only_by_hand():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    own = torch.tensor([[1.0, 0.0], [1.0, 0.0]])  # item 1's own location is item 0's
    queue = torch.tensor([[0.0, 1.0], [-1.0, 0.0]])
    loss = queue_infonce(q, own, queue, torch.tensor(0.0))
    e = math.e
    # item 0: [own 1 | queue 0, -1]; item 1: [own 0 | queue 1, 0]; no batch negatives.
    expected = 0.5 * (-math.log(e / (e + 1 + e**-1)) - math.log(1 / (1 + e + 1)))
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_official_queue_starts_full_of_random_unit_vectors():
    loss = GAIRLoss(LossConfig(queue_size=16, secl_negatives="queue"))
    start = loss.queue.filled().clone()
    assert start.shape == (16, 2)
    assert torch.allclose(start.norm(dim=1), torch.ones(16))
    e = _embeddings()
    encoder = torch.nn.Linear(2, 8)
    terms = loss(e, torch.rand(6, 2) * 50, encoder)
    by_hand = queue_infonce(e["sv"], e["location"], F.normalize(encoder(start), dim=-1),
                            loss.scale("secl_sv"))
    assert terms["secl_sv"].item() == pytest.approx(by_hand.item(), rel=1e-6)
    with pytest.raises(ValueError, match="queue_size"):
        LossConfig(queue_size=0, secl_negatives="queue")


def test_distillation_terms_only_with_teachers_and_weighted():
    e = _embeddings() | {"sv_pooled": torch.randn(6, 8)}
    latlon = torch.rand(6, 2) * 50
    loss = GAIRLoss(LossConfig(queue_size=0))
    plain = loss(e, latlon)
    assert "distill_sv" not in plain
    teacher = {"sv": e["sv_pooled"] * 3.0}
    terms = loss(e, latlon, teacher=teacher)
    assert terms["distill_sv"].item() == pytest.approx(-1.0, abs=1e-6), "-cos of a parallel pair"
    assert terms["loss"].item() == pytest.approx(plain["loss"].item() - 0.2, abs=1e-5)
    e["rs_global"] = F.normalize(torch.randn(6, 8), dim=-1)
    terms = loss(e, latlon, teacher={"rs_global": -e["rs_global"]})
    assert terms["distill_rs"].item() == pytest.approx(1.0, abs=1e-6)
    assert terms["loss"].item() == pytest.approx(plain["loss"].item() + 0.2, abs=1e-5)


@pytest.mark.parametrize("secl_negatives", ["batch_and_queue", "queue"])
def test_loss_logits_are_float32_under_bf16_autocast(secl_negatives):
    """bf16 rounds cosines by up to 0.004, 0.06 in logits at τ = 0.07: the loss under
    autocast must be the float32 loss of the same embeddings."""
    embeddings = _embeddings(32, 64, seed=3)
    latlon = torch.rand(32, 2) * 50
    encoder = LocationEncoder(embed_dim=64, n_features=8, hidden_dim=16, depth=1)
    config = LossConfig(queue_size=16, secl_negatives=secl_negatives)
    with torch.no_grad():
        exact = GAIRLoss(config).eval()(embeddings, latlon, encoder)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = GAIRLoss(config).eval()(embeddings, latlon, encoder)
    for term in GAIRLoss.TERMS:
        assert mixed[term].dtype == torch.float32
        assert mixed[term].item() == pytest.approx(exact[term].item(), rel=1e-5), term


def test_rows_in_chunks_give_the_full_matrix_loss():
    """Validation scores its rows in chunks (never the [N, N] matrix): same losses."""
    embeddings = _embeddings(23, 8, seed=4)
    latlon = torch.rand(23, 2) * 5
    latlon[5] = latlon[2]  # a duplicate place, masked in every chunk
    scale = torch.tensor(math.log(1 / 0.07))
    a, b = embeddings["sv"], embeddings["rs_query"]
    assert symmetric_infonce(a, b, scale, chunk=4).item() == pytest.approx(
        symmetric_infonce(a, b, scale).item(), rel=1e-6)
    queue, queue_latlon = _embeddings(7, 8, seed=5)["location"], torch.rand(7, 2) * 5
    valid = torch.tensor([True, True, False, True, False, True, True])
    full = location_infonce(a, b, latlon, queue, queue_latlon, scale, queue_valid=valid)
    chunked = location_infonce(a, b, latlon, queue, queue_latlon, scale, queue_valid=valid,
                               chunk=5)
    assert chunked.item() == pytest.approx(full.item(), rel=1e-6)
    kept = location_infonce(a, b, latlon, queue[valid], queue_latlon[valid], scale)
    assert full.item() == pytest.approx(kept.item(), rel=1e-6), "invalid slots are no negatives"


def test_queue_push_and_read_need_no_host_sync():
    """The queue's state stays on the device: pushing and masking use tensors only, so a
    training step never waits for the GPU (checked by the operations' results here)."""
    queue = GAIRLoss(LossConfig(queue_size=5)).train().queue
    assert queue.valid().tolist() == [False] * 5
    queue.push(torch.ones(3, 2))
    assert queue.valid().tolist() == [True] * 3 + [False] * 2
    queue.push(torch.full((4, 2), 2.0))
    assert queue.valid().all() and int(queue.pointer) == 2
    assert queue.latlon[:, 0].tolist() == [2.0, 2.0, 1.0, 2.0, 2.0]
