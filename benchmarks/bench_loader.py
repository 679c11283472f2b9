"""Input-pipeline throughput at the paper's format: the real ``PairsDataModule`` train loader.

Reads synthetic paper-format shards (``benchmarks/paper_format.py``: street views stored at
short side 256, RS patches 96 px, 4 views per patch), or ``--shards``, with the published
preprocessing of ``conf/gpu/parameters_pretrain.yml`` (SV 224 px bicubic, RS 96 px, official
RS normalisation, RS jitter 0.7, its shuffle buffer), and times the batches the loader
hands over for the device (the first batch, which starts the workers and fills the
shuffle buffers, is not timed). With ``--workers 0`` the main process decodes on one
thread, so "per worker" means per core either way. Also times :func:`preprocess_batch`
on the loader's batches on ``--device``: the work done on the batch after the transfer.

Prints one JSON line. Usage:
  .venv/bin/python benchmarks/bench_loader.py --workers 2 [--pairs 8000] [--batch 256]
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import torch
import yaml
from paper_format import write_paper_shards  # this folder is on the path of its scripts

from gair.contract import OFFICIAL_BAND_MEAN, OFFICIAL_BAND_STD, PreprocessingContract
from gair.preprocessing import preprocess_batch
from gair.training.data import PairsDataModule

ROOT = Path(__file__).resolve().parents[1]


def _nbytes(value) -> int:
    if torch.is_tensor(value):
        return value.nbytes
    if isinstance(value, dict):
        return sum(_nbytes(v) for v in value.values())
    return 0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(shards: Path, workers: int, batch_size: int, max_batches: int,
            device: torch.device) -> dict:
    raw = yaml.safe_load((ROOT / "conf/gpu/parameters_pretrain.yml").read_text())["pretrain"]
    preprocessing = raw["preprocessing"]
    contract = PreprocessingContract.for_training(OFFICIAL_BAND_MEAN, OFFICIAL_BAND_STD, 96,
                                                  raw["model"], preprocessing)
    module = PairsDataModule(str(shards), batch_size, contract, workers, 0,
                             raw["data"]["shuffle_buffer"], preprocessing["rs_jitter"])
    module.setup()
    threads = torch.get_num_threads()
    if workers == 0:
        torch.set_num_threads(1)
    loader = module.train_dataloader()
    batches = iter(loader)
    start = time.perf_counter()
    first = next(batches)
    first_s = time.perf_counter() - start
    kept = [first]
    count = 0
    start = time.perf_counter()
    for batch in batches:
        count += 1
        if len(kept) < 3:
            kept.append(batch)
        if count == max_batches:
            break
    seconds = time.perf_counter() - start
    main_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    del batches, loader  # shuts the workers down, so their peak memory is known
    if count == 0:
        raise SystemExit(f"{shards}: one batch of {batch_size} only; write more pairs")
    torch.set_num_threads(threads)
    on_device = [{k: v.to(device) if torch.is_tensor(v) else
                  {a: b.to(device) for a, b in v.items()} if isinstance(v, dict) else v
                  for k, v in b.items()} for b in kept]
    preprocess_batch(on_device[0], contract)  # warm-up
    _sync(device)
    start = time.perf_counter()
    for b in on_device:
        preprocess_batch(b, contract)
    _sync(device)
    preprocess_ms = (time.perf_counter() - start) / len(on_device) * 1e3
    pairs_per_s = count * batch_size / seconds
    return {
        "benchmark": "loader_paper_format", "workers": workers, "batch": batch_size,
        "sv_px": contract.sv.size_px, "rs_px": contract.rs.patch_size_px,
        "batches_timed": count, "pairs_per_s": round(pairs_per_s, 1),
        "pairs_per_s_per_worker": round(pairs_per_s / max(workers, 1), 1),
        "first_batch_s": round(first_s, 2),
        "bytes_per_batch_to_device": _nbytes(first),
        "preprocess_device": str(device),
        "preprocess_ms_per_batch": round(preprocess_ms, 1),
        "peak_rss_mb_main": round(main_rss_mb),
        "peak_rss_mb_worker": round(
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=8000, help="synthetic pairs to write")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--batches", type=int, default=20, help="batches to time at most")
    parser.add_argument("--shards", help="read these shards instead of writing synthetic ones")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.shards:
        result = measure(Path(args.shards), args.workers, args.batch, args.batches, device)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            shards = write_paper_shards(Path(tmp) / "shards", args.pairs)
            written_s = time.perf_counter() - start
            result = measure(shards, args.workers, args.batch, args.batches, device)
            result |= {"pairs_written": args.pairs, "write_s": round(written_s, 1),
                       "shard_mb": round(sum(p.stat().st_size for p in shards.rglob("*.tar"))
                                         / 2**20, 1)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
