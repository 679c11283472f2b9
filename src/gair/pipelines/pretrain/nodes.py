"""Nodes of the ``pretrain`` pipeline. Heavy imports (torch, lightning) stay inside."""

import logging
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from gair.parameters import PretrainParams, TrackingParams

logger = logging.getLogger(__name__)


def pretrain_gair(shards_dir: Path, params: PretrainParams, tracking: TrackingParams,
                  tracking_credentials: dict) -> tuple[Path, dict, pd.DataFrame]:
    """Train GAIR on the shards; returns the best checkpoint, flat metrics and the history
    (several devices or nodes run under ``python -m gair.training``: see
    :func:`gair.training.run.pretrain`). ``tracking`` adds TensorBoard and MLflow logs to
    the CSV logs (``tracking_credentials``: the entry ``credentials:NAME`` names)."""
    from gair.tracking import resolve
    from gair.training.run import pretrain, read_history

    run_dir = Path(params.run_dir)
    where = resolve(tracking, tracking_credentials).for_run(
        f"pretrain/{run_dir.name}", {"gair.pipeline": "pretrain"})
    summary = pretrain(shards_dir, params, where)
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
