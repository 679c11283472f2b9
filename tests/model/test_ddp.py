"""DDP equivalence: 2 processes x batch 4 give the loss and gradients of 1 process x batch 8."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from gair.model import GAIR, GAIRConfig, GAIRLoss, LossConfig
from tests.conftest import free_port

CONFIG = GAIRConfig(
    embed_dim=16,
    rs_encoder={"name": "vit_tiny_patch16_224", "img_size": 16, "patch_size": 8, "in_chans": 10,
                "depth": 1, "embed_dim": 32, "num_heads": 2},
    sv_encoder={"name": "vit_tiny_patch16_224", "img_size": 16, "patch_size": 8, "depth": 1,
                "embed_dim": 32, "num_heads": 2},
    location_encoder={"sigmas": [1.0, 16.0], "n_features": 8, "hidden_dim": 16, "depth": 1},
)


def _batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"rs": torch.randn(8, 10, 16, 16, generator=g), "sv": torch.randn(8, 3, 16, 16, generator=g),
            "query": torch.rand(8, 2, generator=g) * 2 - 1,
            "latlon": torch.rand(8, 2, generator=g) * 40}


def _loss_and_grads(model, batch) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    loss_fn = GAIRLoss(LossConfig(queue_size=0))
    inner = model.module if isinstance(model, DistributedDataParallel) else model
    terms = loss_fn(model(batch["rs"], batch["sv"], batch["query"], batch["latlon"]),
                    batch["latlon"], inner.location_encoder)
    terms["loss"].backward()
    return ({k: float(v.detach()) for k, v in terms.items()},
            {n: p.grad.detach().clone() for n, p in inner.named_parameters() if p.grad is not None})


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = DistributedDataParallel(GAIR(CONFIG))
    batch = {k: v[rank * 4 : rank * 4 + 4] for k, v in _batch().items()}
    terms, grads = _loss_and_grads(model, batch)
    torch.save({"terms": terms, "grads": grads}, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()



@pytest.mark.slow
def test_two_ranks_equal_one_rank_with_the_whole_batch(tmp_path):
    torch.manual_seed(0)
    single_terms, single_grads = _loss_and_grads(GAIR(CONFIG), _batch())
    mp.spawn(_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        result = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        for name in ("incl", "secl_sv", "secl_rs", "loss"):
            assert result["terms"][name] == pytest.approx(single_terms[name], abs=1e-5), name
        assert result["grads"].keys() == single_grads.keys()
        for name, grad in single_grads.items():
            assert torch.allclose(result["grads"][name], grad, atol=1e-5), name
