#!/usr/bin/env bash
# The GPU checks, about seven and a half minutes on one H200, most important first: the
# training step runs without host syncs; end-to-end paper-scale throughput through the
# real data path (compiled, then not); the step's parts timed (profile_step.py); the model
# alone on synthetic tensors; the loader alone at the paper format. Each benchmark prints
# one JSON line, gathered in $OUT/results.jsonl with the environment's; each one's log is
# $OUT/<name>.log (8 files in all). A failing or slow benchmark does not hide the others'
# figures: each runs under its own time limit, clipped to what is left of
# GPU_CHECK_SECONDS (540), so on a slow machine the last checks are cut or skipped.
#
#   PYTHON=.venv/bin/python benchmarks/gpu_check.sh     (the project's environment)
#
# On a machine whose Python lacks some of the project's dependencies, put their wheels in
# .whl/ (docs/gpus.md says how) and they are installed to /tmp/site first.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-/tmp/gpu-check}
SHARDS=${SHARDS:-/tmp/gair-paper-shards}
DEADLINE=$(( $(date +%s) + ${GPU_CHECK_SECONDS:-540} ))
WORKERS=${WORKERS:-12}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 MLFLOW_DISABLE_TELEMETRY=true

# run NAME SECONDS COMMAND...: stdout's JSON lines go to results.jsonl, the rest to the log.
run() {
  local name=$1 limit=$2 left started rc
  shift 2
  left=$(( DEADLINE - $(date +%s) ))
  (( left < limit )) && limit=$left
  if (( limit < 20 )); then echo "$name: skipped, no time left"; return; fi
  started=$(date +%s)
  timeout -k 5 "$limit" "$@" >"$OUT/$name.out" 2>"$OUT/$name.log"
  rc=$?
  grep -h '^{' "$OUT/$name.out" | sed "s/^{/{\"check\": \"$name\", /" | tee -a "$OUT/results.jsonl"
  grep -v '^{' "$OUT/$name.out" >>"$OUT/$name.log"
  rm -f "$OUT/$name.out"  # what comes back from a device machine is a few files only
  echo "$name: exit $rc after $(( $(date +%s) - started )) s (limit $limit s)"
  if (( rc != 0 )); then tail -n 15 "$OUT/$name.log"; fi
}

"$PY" - <<'PY' | tee -a "$OUT/results.jsonl"
import json, os, platform, subprocess

import lightning, numpy, pandas, timm, torch

gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                      "--format=csv,noheader"], capture_output=True, text=True).stdout.strip()
print(json.dumps({"check": "environment", "gpu": gpu, "cpu_cores": os.cpu_count(),
                  "python": platform.python_version(), "torch": torch.__version__,
                  "lightning": lightning.__version__, "timm": timm.__version__,
                  "pandas": pandas.__version__, "numpy": numpy.__version__}))
PY

run sync_check 120 "$PY" - <<'PY'
# Any operation that waits for the GPU inside the training step raises here.
import json

import torch
import yaml

from gair.model import GAIR, GAIRConfig, GAIRLoss, LossConfig

raw = yaml.safe_load(open("conf/gpu/parameters_pretrain.yml"))["pretrain"]
raw["model"]["rs_encoder"].pop("weights", None)
model = GAIR(GAIRConfig(**raw["model"])).cuda().train()
loss = GAIRLoss(LossConfig(**raw["loss"])).cuda().train()
optimizer = torch.optim.AdamW(list(model.parameters()) + list(loss.parameters()), lr=1e-4,
                              fused=True)
batch = {"rs": torch.rand(8, 10, 96, 96), "sv": torch.rand(8, 3, 224, 224),
         "query": torch.rand(8, 2) * 2 - 1, "latlon": torch.rand(8, 2) * 60}
batch = {k: v.cuda() for k, v in batch.items()}
synced = None
for step in range(3):
    torch.cuda.set_sync_debug_mode("error" if step else "default")  # step 0 warms up
    try:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            terms = loss(model(batch["rs"], batch["sv"], batch["query"], batch["latlon"]),
                         batch["latlon"], model.location_encoder)
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        optimizer.step()
    except RuntimeError as error:  # reported, and the benchmarks still run
        synced = str(error).splitlines()[0][:300]
        break
torch.cuda.set_sync_debug_mode("default")
print(json.dumps({"host_sync_in_step": synced or "none"}))
PY

# One set of paper-format shards for every benchmark below (84 batches of 256).
run write_shards 90 "$PY" -c "
import sys, time; sys.path.insert(0, 'benchmarks')
from pathlib import Path; from paper_format import write_paper_shards
start = time.perf_counter(); write_paper_shards(Path('$SHARDS'), 24_000)
print('{\"pairs_written\": 24000, \"seconds\": %.1f}' % (time.perf_counter() - start))"

run pretrain_compiled 200 "$PY" benchmarks/bench_gpu_pretrain.py --batch 256 --steps 50 \
  --warmup 10 --workers "$WORKERS" --shards "$SHARDS"
run pretrain_eager 100 "$PY" benchmarks/bench_gpu_pretrain.py --batch 256 --steps 50 \
  --warmup 5 --workers "$WORKERS" --shards "$SHARDS" --no-compile
run profile 180 "$PY" benchmarks/profile_step.py --batch 256 --shards "$SHARDS"
run model_alone 60 "$PY" benchmarks/bench_train_step.py --paper-scale --device cuda \
  --batch 256 --steps 10
run loader 60 "$PY" benchmarks/bench_loader.py --workers "$WORKERS" --shards "$SHARDS"
echo "== results"
cat "$OUT/results.jsonl" 2>/dev/null
