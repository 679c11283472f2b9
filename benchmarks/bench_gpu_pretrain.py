"""End-to-end pretraining throughput at paper scale: ``Trainer.fit`` fed by the real data path.

Writes paper-format shards (SV JPEGs of short side 256 trained at 224 px, RS 96 px, see
``paper_format.py``), builds the conf/gpu recipe with :func:`gair.training.run.build_training`
(CROMA-base RS, ViT-B/16 SV with pooler, queue-only SECL, official preprocessing and
jitter, both frozen teachers, bf16-mixed, ``torch.compile`` as conf/gpu sets it) from
random weights (teacher files are generated: the step costs the same), and times
``--steps`` training steps after ``--warmup`` (compilation and the first loader pass are
in the warm-up). Then the same steps again on one batch held in memory (pinned, the same
on-device preprocessing) for the ratio. Prints one JSON line: pairs/s fed and in memory,
their ratio, the share of step time spent waiting for data (one minus that ratio, at
least 0), FLOPs per pair (counted with ``torch.utils.flop_counter`` on one uncompiled
step: student forward and backward, the teachers' forward, the losses), MFU against ``--peak-flops`` (dense bf16; default an
H200's 989e12), and peak GPU memory.

Usage (on a GPU machine; ``gpu_check.sh`` runs it):
  python benchmarks/bench_gpu_pretrain.py --batch 256 --steps 50 --warmup 10 --workers 8
  python benchmarks/bench_gpu_pretrain.py --tiny      (a CPU smoke run of the script itself)
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from lightning.fabric.utilities.apply_func import move_data_to_device
from lightning.pytorch.callbacks import Callback
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode

from gair.io.shards import SAMPLES_TABLE
from gair.model import GAIR, GAIRConfig
from gair.model.encoders import SVEncoder
from gair.parameters import PretrainParams
from gair.training.run import build_training

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from paper_format import write_paper_shards  # noqa: E402


class StepTimer(Callback):
    """Wall time of the training steps after ``warmup`` (synchronised with the device at
    both ends)."""

    def __init__(self, warmup: int, steps: int, device: torch.device) -> None:
        self.warmup, self.steps, self.device = warmup, steps, device
        self.started = self.ended = None

    def _now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if batch_idx == self.warmup:
            self.started = self._now()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx == self.warmup + self.steps - 1:
            self.ended = self._now()

    def seconds(self) -> float:
        if self.started is None or self.ended is None:
            raise RuntimeError("the timed steps did not all run: more pairs are needed")
        return self.ended - self.started


class InMemoryBatches(L.LightningDataModule):
    """One real batch, pinned in host memory, served ``count`` times, preprocessed on the
    device as the real DataModule preprocesses: the model's rate without the loader."""

    def __init__(self, source: L.LightningDataModule, count: int) -> None:
        super().__init__()
        self.source, self.count = source, count
        self.batch_size = source.batch_size  # read by configure_optimizers
        self.batch = next(iter(source.train_dataloader()))

    def train_dataloader(self) -> DataLoader:
        # batch_size None: the items are whole batches, passed on as they are.
        return DataLoader([self.batch] * self.count, batch_size=None,
                          pin_memory=torch.cuda.is_available())

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        return self.source.on_after_batch_transfer(batch, dataloader_idx)


def teacher_files(model: dict[str, Any], folder: Path) -> dict[str, str]:
    """Random-weight teacher files in the layouts the teachers read: the step costs the
    same as with CROMA's and the ImageNet-21k ViT's releases."""
    student = GAIR(GAIRConfig(**model))
    rs, sv = folder / "rs_teacher.pt", folder / "sv_teacher.pt"
    torch.save(student.rs_encoder.state_dict(), rs)
    encoder = SVEncoder(**student.config.architecture()["sv_encoder"])
    torch.save({k.removeprefix("vit."): v for k, v in encoder.state_dict().items()}, sv)
    return {"rs_weights": str(rs), "sv_weights": str(sv)}


def benchmark_params(args: argparse.Namespace, folder: Path) -> PretrainParams:
    """conf/gpu's pretraining parameters (conf/base's model with ``--tiny``), local
    weight files replaced by random ones, sized by the command line."""
    raw = yaml.safe_load((ROOT / "conf/gpu/parameters_pretrain.yml").read_text())["pretrain"]
    if args.tiny:
        base = yaml.safe_load((ROOT / "conf/base/parameters_pretrain.yml").read_text())["pretrain"]
        raw["model"] = base["model"]
    raw["model"]["rs_encoder"].pop("weights", None)
    raw["teachers"] = teacher_files(raw["model"], folder)
    raw["run_dir"] = str(folder / "run")
    raw["data"] |= {"batch_size": args.batch, "num_workers": args.workers}
    raw["performance"]["compile"] = args.compile
    if args.accumulate is not None:
        raw["trainer"]["accumulate_grad_batches"] = args.accumulate
    return PretrainParams(**raw)


def first_batch_on(device: torch.device, datamodule: L.LightningDataModule) -> dict[str, Any]:
    """The first training batch, moved to ``device`` and preprocessed there as in training."""
    batch = next(iter(datamodule.train_dataloader()))
    return datamodule.on_after_batch_transfer(move_data_to_device(batch, device), 0)


def count_flops(system: torch.nn.Module, datamodule: L.LightningDataModule,
                device: torch.device, bf16: bool) -> float:
    """FLOPs of one training step (uncompiled: compiled kernels are not counted), per pair."""
    batch = first_batch_on(device, datamodule)
    counted = copy.deepcopy(system).to(device).train()
    with FlopCounterMode(display=False) as counter:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            teacher = counted.teachers(batch) if counted.teachers is not None else None
            terms = counted.loss(counted(batch), batch["latlon"],
                                 counted.model.location_encoder, teacher)
        terms["loss"].backward()
    del counted
    return counter.get_total_flops() / len(batch["latlon"])


def fit(system, datamodule, args, params, device, timer) -> None:
    trainer = L.Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu", devices=1,
        precision="bf16-mixed" if device.type == "cuda" else "32-true",
        max_epochs=1, limit_train_batches=args.warmup + args.steps, limit_val_batches=0,
        num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[timer],
        accumulate_grad_batches=params.trainer.accumulate_grad_batches,
    )
    trainer.fit(system, datamodule=datamodule)


_STARTED = time.perf_counter()


def _progress(message: str) -> None:
    """Where a long run stands, on stderr (stdout holds the JSON line alone)."""
    print(f"[{time.perf_counter() - _STARTED:6.1f} s] {message}", file=sys.stderr, flush=True)


def _figure(value: float) -> float:
    """Four significant digits (an MFU on a CPU is tiny, not zero)."""
    return float(f"{value:.4g}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256, help="per device")
    parser.add_argument("--steps", type=int, default=50, help="timed steps")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first")
    parser.add_argument("--workers", type=int, default=8, help="DataLoader workers")
    parser.add_argument("--accumulate", type=int, default=None,
                        help="gradient accumulation (default: conf/gpu's)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--peak-flops", type=float, default=989e12,
                        help="the device's dense bf16 peak (H200: 989e12)")
    parser.add_argument("--tiny", action="store_true",
                        help="conf/base's CPU model, a check of the script itself")
    parser.add_argument("--shards", type=Path,
                        help="paper-format shards to read; written there first if absent "
                             "(so several runs share one set)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    bf16 = device.type == "cuda"
    with tempfile.TemporaryDirectory(prefix="gair-bench-") as tmp:
        folder = Path(tmp)
        # Enough pairs that one epoch covers warm-up and timed steps at any worker count.
        pairs = (args.warmup + args.steps + 2 * max(args.workers, 1)) * args.batch
        shards = args.shards or folder / "shards"
        if not (shards / SAMPLES_TABLE).exists():
            write_paper_shards(shards, int(pairs / 0.9) + args.batch)
        params = benchmark_params(args, folder)
        # FLOPs are counted on the plain modules; compiled afterwards where asked.
        system, datamodule = build_training(
            params.with_overrides({"performance.compile": False}), shards)
        datamodule.setup()
        _progress("shards ready, system built")
        flops = count_flops(system, datamodule, device, bf16)
        _progress(f"{flops / 1e9:.1f} GFLOP per pair counted")
        if params.performance.compile:
            system.compile_encoders(params.performance.compile_backend)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        fed = StepTimer(args.warmup, args.steps, device)
        fit(system, datamodule, args, params, device, fed)
        _progress(f"fed by the DataModule: {args.steps * args.batch / fed.seconds():.1f} pairs/s")
        memory = InMemoryBatches(datamodule, args.warmup + args.steps)
        in_memory = StepTimer(args.warmup, args.steps, device)
        fit(system, memory, args, params, device, in_memory)
        _progress(f"in memory: {args.steps * args.batch / in_memory.seconds():.1f} pairs/s")
    rate = args.steps * args.batch / fed.seconds()
    rate_in_memory = args.steps * args.batch / in_memory.seconds()
    result = {
        "benchmark": "gpu_pretrain", "device": torch.cuda.get_device_name(device)
        if device.type == "cuda" else "cpu", "model": "conf/base" if args.tiny else "conf/gpu",
        "precision": "bf16-mixed" if bf16 else "32-true", "compile": params.performance.compile,
        "batch": args.batch, "accumulate": params.trainer.accumulate_grad_batches,
        "workers": args.workers, "steps": args.steps, "warmup": args.warmup,
        "pairs_per_s": _figure(rate), "pairs_per_s_in_memory": _figure(rate_in_memory),
        "ratio": _figure(rate / rate_in_memory),
        # The step time the loader adds: the host's own gap between steps is no measure
        # of it, since the host also waits there for the GPU's queued work.
        "data_wait_share": _figure(max(0.0, 1 - rate / rate_in_memory)),
        "gflop_per_pair": _figure(flops / 1e9),
        "mfu": _figure(rate * flops / args.peak_flops),
        "mfu_in_memory": _figure(rate_in_memory * flops / args.peak_flops),
        "peak_flops": args.peak_flops,
    }
    if device.type == "cuda":
        result["peak_gpu_mem_gb"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    else:
        result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
