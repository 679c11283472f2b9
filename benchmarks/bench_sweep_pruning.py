"""Sweep with and without pruning at the same trial count, on the default shards.

Prints one JSON line: total training steps spent and best value reached by each, and the
share of steps pruning spends. Usage (after `kedro run --pipelines sample_world,ingest,pair`):
  .venv/bin/python benchmarks/bench_sweep_pruning.py [--trials 8]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import yaml

from gair.parameters import PretrainParams, SweepParams
from gair.sweep import SweepSettings, run_study

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--shards", default=str(ROOT / "data/05_model_input/shards"))
    args = parser.parse_args()
    os.environ["GAIR_SWEEP_WORKER"] = "0"  # the same sampler seeds for both studies
    conf = ROOT / "conf/base"
    pretrain = yaml.safe_load((conf / "parameters_pretrain.yml").read_text())["pretrain"]
    pretrain["run_dir"] = "unused"
    base = PretrainParams(**pretrain)
    sweep = yaml.safe_load((conf / "parameters_sweep.yml").read_text())["sweep"]
    result = {"benchmark": "sweep_pruning", "trials": args.trials,
              "budget_epochs": sweep["budget"].get("trainer.max_epochs")}
    with tempfile.TemporaryDirectory() as tmp:
        for label, pruner in (("pruned", sweep["pruner"]), ("unpruned", {"type": "none"})):
            settings = SweepSettings.from_params(SweepParams(**sweep | {
                "study_name": label, "storage": "journal", "storage_dir": tmp,
                "n_trials": args.trials, "total_trials": args.trials, "pruner": pruner,
            }))
            start = time.perf_counter()
            study = run_study(settings, base, Path(args.shards))
            result[f"{label}_seconds"] = round(time.perf_counter() - start, 1)
            result[f"{label}_steps"] = sum(t.user_attrs.get("steps", 0) for t in study.trials)
            result[f"{label}_best"] = round(study.best_value, 4)
            result[f"{label}_states"] = {s: sum(t.state.name == s for t in study.trials)
                                         for s in ("COMPLETE", "PRUNED", "FAIL")}
    result["steps_ratio"] = round(result["pruned_steps"] / result["unpruned_steps"], 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
