"""Nodes of the ``pretrain`` pipeline. Heavy imports (torch, lightning) stay inside."""

import json
import logging
import subprocess
import sys
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from gair.parameters import PretrainParams

logger = logging.getLogger(__name__)


def pretrain_gair(shards_dir: Path, params: PretrainParams) -> tuple[Path, dict, pd.DataFrame]:
    """Train GAIR on the shards; returns the best checkpoint, flat metrics and the history.

    One device runs in this process; more devices (or nodes) run under the multi-device
    entry point ``python -m gair.training``, launched here and waited for, so ``kedro run``
    itself is never re-executed per rank.
    """
    from gair.training.run import SPEC_NAME, SUMMARY_NAME, read_history, run_pretraining

    run_dir = Path(params.run_dir)
    spec = {"shards_dir": str(shards_dir), "run_dir": str(run_dir),
            "params": params.model_dump(mode="json")}
    if params.needs_launcher():
        run_dir.mkdir(parents=True, exist_ok=True)
        spec_file = run_dir.parent / f"{run_dir.name}.{SPEC_NAME}"
        spec_file.write_text(json.dumps(spec, indent=1))
        logger.info("Launching multi-device pretraining: %s -m gair.training %s",
                    sys.executable, spec_file)
        subprocess.run([sys.executable, "-m", "gair.training", str(spec_file)], check=True)
        summary = json.loads((run_dir / SUMMARY_NAME).read_text())
    else:
        summary = run_pretraining(spec)
    history = read_history(run_dir)
    if "val/loss" not in history:
        logger.warning("No validation metrics: the val split of %s is empty (too few spatial "
                       "blocks?); the last checkpoint is published", shards_dir)
    metrics = {f"pretrain/{k}": round(v, 6) for k, v in sorted(summary["metrics"].items())
               if k.startswith("val/")}
    if summary["best_score"] is not None:
        metrics[f"pretrain/best_{params.checkpoint.monitor}"] = round(summary["best_score"], 6)
    metrics["pretrain/epochs"] = summary["epochs"]
    metrics["pretrain/global_step"] = summary["global_step"]
    best = summary["best_checkpoint"] or summary["last_checkpoint"]
    logger.info("Pretraining done: %s (checkpoint %s)", metrics, best)
    return Path(best), metrics, history


def plot_training_curves(history: pd.DataFrame) -> Figure:
    """Training loss per step; validation loss and R@1 per epoch (where logged)."""
    figure = Figure(figsize=(11, 3.6), layout="constrained")
    loss_ax, val_ax, r_ax = figure.subplots(1, 3)

    def logged(column: str) -> pd.DataFrame:
        return history.dropna(subset=[column]) if column in history else history.iloc[:0]

    train = logged("train/loss")
    loss_ax.plot(train.get("step", []), train.get("train/loss", []), lw=1)
    loss_ax.set(title="train/loss", xlabel="step")
    val = logged("val/loss")
    val_ax.plot(val.get("epoch", []), val.get("val/loss", []), marker="o")
    val_ax.set(title="val/loss", xlabel="epoch")
    for key in ("val/r@1", "val/r@5"):
        if key in val:
            r_ax.plot(val["epoch"], val[key], marker="o", label=key)
    if "val/chance_r@1" in val and len(val):
        r_ax.axhline(val["val/chance_r@1"].iloc[-1], ls="--", c="grey", label="chance R@1")
    r_ax.set(title="SV -> RS retrieval (val)", xlabel="epoch", ylim=(0, 1))
    if val.empty:
        r_ax.text(0.5, 0.5, "no validation split", ha="center", va="center")
    else:
        r_ax.legend(fontsize="small")
    return figure
