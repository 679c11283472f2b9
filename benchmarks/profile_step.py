"""Where the paper-scale training step spends its time, part by part.

Builds the conf/gpu system as ``bench_gpu_pretrain.py`` does (random weights, both frozen
teachers, the real DataModule's batch and on-device preprocessing) and times one training
step's parts with device events, eager and then compiled as conf/gpu compiles it: the
teachers' forward, the student's forward (RS encoder, SV encoder, NILI, location), the
losses, the backward and the fused AdamW step. Each part's FLOPs are counted with
``torch.utils.flop_counter``, so each gets its achieved TFLOP/s. Then the CROMA encoder's
forward and backward alone, with its ALiBi bias and without (the bias keeps
``scaled_dot_product_attention`` off its flash kernel), and the ten GPU kernels that take
most of one eager step (``torch.profiler``). Prints one JSON line.

Usage (on a GPU machine):
  python benchmarks/profile_step.py --batch 256 --shards /tmp/gair-paper-shards
  python benchmarks/profile_step.py --tiny --batch 4 --device cpu   (a check of the script)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_gpu_pretrain import benchmark_params, first_batch_on
from paper_format import write_paper_shards

from gair.io.shards import SAMPLES_TABLE
from gair.model import croma
from gair.training.run import build_training

PARTS = ("teachers", "student_forward", "losses", "backward", "optimizer")


class Clock:
    """Elapsed milliseconds between marks: device events on a GPU, the host clock else."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.marks: list = []

    def mark(self) -> None:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append(event)
        else:
            self.marks.append(time.perf_counter())

    def intervals(self) -> list[float]:
        if self.cuda:
            torch.cuda.synchronize()
            return [a.elapsed_time(b) for a, b in zip(self.marks, self.marks[1:], strict=False)]
        return [(b - a) * 1e3 for a, b in zip(self.marks, self.marks[1:], strict=False)]


def training_step(system, batch, optimizer, bf16: bool, clock: Clock | None = None) -> None:
    """One step as ``GAIRPretraining.training_step`` takes it, a mark between parts."""
    mark = clock.mark if clock is not None else (lambda: None)
    mark()
    with torch.autocast(batch["latlon"].device.type, dtype=torch.bfloat16, enabled=bf16):
        teacher = system.teachers(batch) if system.teachers is not None else None
        mark()
        out = system(batch)
        mark()
        terms = system.loss(out, batch["latlon"], system.model.location_encoder, teacher)
        mark()
    terms["loss"].backward()
    mark()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    mark()


def time_parts(system, batch, optimizer, bf16: bool, device, warmup: int, steps: int):
    for _ in range(warmup):
        training_step(system, batch, optimizer, bf16)
    rows = []
    for _ in range(steps):
        clock = Clock(device)
        training_step(system, batch, optimizer, bf16, clock)
        rows.append(clock.intervals())
    return {part: round(statistics.median(row[i] for row in rows), 2)
            for i, part in enumerate(PARTS)}


def count_parts(system, batch, bf16: bool) -> dict[str, float]:
    """FLOPs of each part of one step (the optimizer's elementwise work is not counted)."""
    flops = {}
    with torch.autocast(batch["latlon"].device.type, dtype=torch.bfloat16, enabled=bf16):
        with FlopCounterMode(display=False) as counter:
            teacher = system.teachers(batch) if system.teachers is not None else None
        flops["teachers"] = counter.get_total_flops()
        with FlopCounterMode(display=False) as counter:
            out = system(batch)
        flops["student_forward"] = counter.get_total_flops()
        with FlopCounterMode(display=False) as counter:
            terms = system.loss(out, batch["latlon"], system.model.location_encoder, teacher)
        flops["losses"] = counter.get_total_flops()
    with FlopCounterMode(display=False) as counter:
        terms["loss"].backward()
    flops["backward"] = counter.get_total_flops()
    system.zero_grad(set_to_none=True)
    return flops


def croma_alone(encoder, rs: torch.Tensor, bf16: bool, device, steps: int) -> dict[str, float]:
    """The RS encoder's forward and backward, ms, with its ALiBi bias and without."""
    original = croma.F.scaled_dot_product_attention

    def unbiased(q, k, v, attn_mask=None, dropout_p=0.0):
        return original(q, k, v, dropout_p=dropout_p)

    result = {}
    for name, attention in (("alibi_ms", original), ("no_bias_ms", unbiased)):
        croma.F.scaled_dot_product_attention = attention
        try:
            times = []
            for step in range(steps + 2):
                clock = Clock(device)
                clock.mark()
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                    grid, pooled = encoder(rs)
                (grid.float().mean() + pooled.float().mean()).backward()
                clock.mark()
                if step >= 2:
                    times += clock.intervals()
            result[name] = round(statistics.median(times), 2)
        finally:
            croma.F.scaled_dot_product_attention = original
    encoder.zero_grad(set_to_none=True)
    return result


def top_kernels(system, batch, optimizer, bf16: bool, count: int = 10) -> list[dict]:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        training_step(system, batch, optimizer, bf16)
        torch.cuda.synchronize()
    events = [e for e in prof.key_averages() if e.device_time_total > 0]
    total = sum(e.self_device_time_total for e in events)
    events.sort(key=lambda e: e.self_device_time_total, reverse=True)
    return [{"kernel": e.key[:90], "calls": e.count,
             "ms": round(e.self_device_time_total / 1e3, 2),
             "share": round(e.self_device_time_total / total, 3)} for e in events[:count]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per mode")
    parser.add_argument("--shards", type=Path, help="paper-format shards (written if absent)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--tiny", action="store_true", help="conf/base's CPU model")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    bf16 = device.type == "cuda"
    args.workers, args.accumulate = 0, None
    with tempfile.TemporaryDirectory(prefix="gair-profile-") as tmp:
        folder = Path(tmp)
        shards = args.shards or folder / "shards"
        if not (shards / SAMPLES_TABLE).exists():
            write_paper_shards(shards, 4 * args.batch)
        params = benchmark_params(args, folder)
        system, datamodule = build_training(
            params.with_overrides({"performance.compile": False}), shards)
        datamodule.setup()
        batch = first_batch_on(device, datamodule)
        system = system.to(device).train()
        trainable = [p for p in system.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=1e-6, fused=device.type == "cuda")
        flops = count_parts(system, batch, bf16)
        result = {"benchmark": "profile_step", "device": torch.cuda.get_device_name(device)
                  if bf16 else "cpu", "batch": args.batch,
                  "gflop_per_pair": {k: round(v / args.batch / 1e9, 2) for k, v in flops.items()}}
        result["eager_ms"] = time_parts(system, batch, optimizer, bf16, device, 2, args.steps)
        result["croma_fwd_bwd"] = croma_alone(system.model.rs_encoder, batch["rs"], bf16,
                                              device, args.steps)
        if bf16:
            try:  # the profiler is the least essential part: its failure costs no figures
                result["top_kernels_eager"] = top_kernels(system, batch, optimizer, bf16)
            except Exception as error:
                result["top_kernels_eager"] = f"profiler failed: {error}"
        if args.compile:
            system.compile_encoders(params.performance.compile_backend)
            result["compiled_ms"] = time_parts(system, batch, optimizer, bf16, device, 3,
                                               args.steps)
        for mode in ("eager_ms", "compiled_ms"):
            if mode in result:
                result[mode.replace("_ms", "_tflops")] = {
                    part: round(flops[part] / (ms / 1e3) / 1e12, 1)
                    for part, ms in result[mode].items() if part in flops}
                result[mode.replace("_ms", "_pairs_per_s")] = round(
                    args.batch / (sum(result[mode].values()) / 1e3), 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
