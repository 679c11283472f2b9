#!/usr/bin/env bash
# The GPU checks, a few minutes on one NVIDIA GPU: the training step runs without host
# syncs, then paper-scale throughput (model alone, then end to end through the real data
# path, compiled and not) and the loader at the paper format. One JSON line per benchmark.
#
#   PYTHON=.venv/bin/python benchmarks/gpu_check.sh     (the project's environment)
#
# On a machine whose Python lacks some of the project's dependencies, put their wheels in
# .whl/ (docs/gpus.md says how) and they are installed to /tmp/site first.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 MLFLOW_DISABLE_TELEMETRY=true
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
"$PY" - <<'PY'
# Any operation that waits for the GPU inside the training step raises here.
import torch
import yaml
from gair.model import GAIR, GAIRConfig, GAIRLoss, LossConfig

raw = yaml.safe_load(open("conf/gpu/parameters_pretrain.yml"))["pretrain"]
raw["model"]["rs_encoder"].pop("weights", None)
model = GAIR(GAIRConfig(**raw["model"])).cuda().train()
loss = GAIRLoss(LossConfig(**raw["loss"])).cuda().train()
optimizer = torch.optim.AdamW(list(model.parameters()), lr=1e-4, fused=True)
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
print({"host_sync_in_step": synced or "none"})
PY
for batch in 64 256; do
  "$PY" benchmarks/bench_train_step.py --paper-scale --device cuda --batch "$batch" --steps 10 \
    || echo "bench_train_step --batch $batch failed" >&2
done
# One failing benchmark does not hide the others' figures.
"$PY" benchmarks/bench_gpu_pretrain.py --batch 256 --steps 50 --warmup 10 --workers 12 \
  || echo "bench_gpu_pretrain (compiled) failed" >&2
"$PY" benchmarks/bench_gpu_pretrain.py --batch 256 --steps 50 --warmup 5 --workers 12 --no-compile \
  || echo "bench_gpu_pretrain (not compiled) failed" >&2
"$PY" benchmarks/bench_loader.py --workers 12 || echo "bench_loader failed" >&2
