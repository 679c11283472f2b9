#!/usr/bin/env bash
# The GPU checks run on a lent accelerator (its image has torch and timm, not this venv):
# NILI on CUDA in bf16, then paper-scale training-step throughput in bf16.
set -euo pipefail
export PYTHONPATH=src
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 - <<'PY'
import torch
from gair.model import NILI
nili = NILI(768, 768).cuda()
feat = torch.randn(4, 768, 12, 12, device="cuda")
coord = torch.rand(4, 7, 2, device="cuda") * 2 - 1
with torch.autocast("cuda", dtype=torch.bfloat16):
    out = nili(feat, coord)
print({"nili_cuda_bf16": list(out.shape), "dtype": str(out.dtype), "finite": bool(torch.isfinite(out).all())})
PY
for batch in 64 256; do
  python3 benchmarks/bench_train_step.py --paper-scale --device cuda --batch "$batch" --steps 5
done
