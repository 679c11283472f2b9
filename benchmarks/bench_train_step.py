"""Training-step throughput: fed by the real DataModule versus in-memory tensors.

For the same model and batch size in one process, measures samples/s of the full step
(loading from the shards, then the batch preprocessing and augmentation that training
does after the transfer + forward + losses + backward + AdamW) and of the same step on
one batch already in memory, in alternating rounds; prints one JSON line with both and
their ratio. ``--paper-scale`` instead times the paper-scale model of conf/gpu (CROMA-base
RS 96 px patch 8, ViT-B/16 SV 224 px with its pooler, 768-d, queue-only SECL) on synthetic
tensors, on the CPU or a GPU (bf16 there).

Usage:
  .venv/bin/python benchmarks/bench_train_step.py [--steps 20]      (needs the pair outputs)
  .venv/bin/python benchmarks/bench_train_step.py --paper-scale --batch 8 --steps 1
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import time
from pathlib import Path

import torch
import yaml

from gair.model import GAIR, GAIRConfig, GAIRLoss, LossConfig

ROOT = Path(__file__).resolve().parents[1]
def paper_config() -> tuple[dict, dict]:
    """The model and loss of conf/gpu (the published architecture), without weight files:
    the step costs the same from random weights. The distillation teachers' forward passes
    (a frozen ViT-B/16 and a frozen CROMA-base, no gradients) are not included."""
    raw = yaml.safe_load((ROOT / "conf/gpu/parameters_pretrain.yml").read_text())["pretrain"]
    raw["model"]["rs_encoder"].pop("weights", None)
    return raw["model"], raw["loss"]


def _step_fn(model: GAIR, loss: GAIRLoss, device: torch.device, bf16: bool):
    # Fused on CUDA, as GAIRPretraining.configure_optimizers makes it.
    optimizer = torch.optim.AdamW(list(model.parameters()) + list(loss.parameters()), lr=1e-4,
                                  betas=(0.9, 0.95), weight_decay=0.05,
                                  fused=device.type == "cuda" or None)

    def step(batch: dict[str, torch.Tensor]) -> None:
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items() if torch.is_tensor(v)}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            embeddings = model(batch["rs"], batch["sv"], batch["query"], batch["latlon"])
            terms = loss(embeddings, batch["latlon"], model.location_encoder)
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        optimizer.step()

    return step


def _synthetic(batch: int, rs: int, sv: int) -> dict[str, torch.Tensor]:
    return {"rs": torch.randn(batch, 10, rs, rs), "sv": torch.randn(batch, 3, sv, sv),
            "query": torch.rand(batch, 2) * 2 - 1, "latlon": torch.rand(batch, 2) * 60}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def paper_scale(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    model_cfg, loss_cfg = paper_config()
    model = GAIR(GAIRConfig(**model_cfg)).to(device).train()
    loss = GAIRLoss(LossConfig(**loss_cfg)).to(device).train()
    bf16 = device.type == "cuda"
    step = _step_fn(model, loss, device, bf16)
    batch = _synthetic(args.batch, 96, 224)
    step(batch)  # warm-up
    _sync(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        step(batch)
    _sync(device)
    seconds = (time.perf_counter() - start) / args.steps
    result = {"benchmark": "train_step_paper_scale", "device": str(device),
              "precision": "bf16-mixed" if bf16 else "32-true", "batch": args.batch,
              "seconds_per_step": round(seconds, 3), "pairs_per_s": round(args.batch / seconds, 1),
              "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 1)}
    if device.type == "cuda":
        result["peak_gpu_mem_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return result


def default_config(args: argparse.Namespace) -> dict:
    from gair.contract import PreprocessingContract
    from gair.io.shards import read_shard
    from gair.parameters import PretrainParams
    from gair.training.data import PairsDataModule, band_statistics

    raw = yaml.safe_load((ROOT / "conf/base/parameters_pretrain.yml").read_text())["pretrain"]
    raw["run_dir"] = "unused"
    if args.workers is not None:
        raw["data"]["num_workers"] = args.workers
    params = PretrainParams(**raw)
    shards = Path(args.shards)
    if not (shards / "samples.parquet").is_file():
        raise SystemExit(f"{shards}: no shards; run `kedro run --pipelines sample_world,ingest,pair`")
    torch.manual_seed(0)
    mean, std = band_statistics(sorted(shards.glob("train/*.tar")), 256)
    patch_px = next(read_shard(sorted(shards.glob("train/*.tar"))[0]))["rs"].shape[-1]
    contract = PreprocessingContract.for_training(
        mean, std, patch_px, params.model.model_dump(mode="json"),
        params.preprocessing.model_dump())
    module = PairsDataModule(str(shards), params.data.batch_size, contract,
                             params.data.num_workers, 0, params.data.shuffle_buffer)
    module.setup()
    model = GAIR(params.model).train()
    loss = GAIRLoss(params.loss).train()
    model_step = _step_fn(model, loss, torch.device("cpu"), bf16=False)

    def step(batch: dict) -> None:
        # Both ways include the batch preprocessing done after the transfer in training.
        model_step(module.on_after_batch_transfer(batch, 0))

    loader = module.train_dataloader()  # one loader for every pass, as the trainer keeps it
    fed_batches = (batch for _ in itertools.count() for batch in loader)
    in_memory = next(fed_batches)
    for _ in range(2):
        step(in_memory)  # warm-up
    # Alternating rounds, so a change in the machine's load hits both figures alike.
    seconds = {"fed": 0.0, "in_memory": 0.0}
    rounds = max(1, args.steps // 5)  # short rounds: load changes hit both ways alike
    for _ in range(rounds):
        for way in seconds:
            start = time.perf_counter()
            for _ in range(args.steps // rounds):
                step(next(fed_batches) if way == "fed" else in_memory)
            seconds[way] += time.perf_counter() - start
    fed, alone = (args.steps // rounds * rounds * params.data.batch_size / seconds[way]
                  for way in ("fed", "in_memory"))
    return {"benchmark": "train_step", "batch": params.data.batch_size,
            "steps": args.steps // rounds * rounds,
            "num_workers": params.data.num_workers, "threads": torch.get_num_threads(),
            "datamodule_samples_per_s": round(fed, 1), "in_memory_samples_per_s": round(alone, 1),
            "ratio": round(fed / alone, 3),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--shards", default=str(ROOT / "data/05_model_input/shards"))
    parser.add_argument("--paper-scale", action="store_true")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--workers", type=int, default=None,
                        help="DataLoader workers (default: conf/base's)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    print(json.dumps(paper_scale(args) if args.paper_scale else default_config(args)))


if __name__ == "__main__":
    main()
