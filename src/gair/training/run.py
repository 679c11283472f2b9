"""One pretraining run: from a run specification to checkpoints, logs and a summary.

The same function runs in the Kedro node (one device) and under the multi-device entry
point ``python -m gair.training <spec.json>`` (DDP: Lightning starts the other local
ranks by re-running that command, never ``kedro run``).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import pandas as pd
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger

from gair.contract import OFFICIAL_BAND_MEAN, OFFICIAL_BAND_STD, PreprocessingContract
from gair.io.shards import read_shard
from gair.parameters import PretrainParams
from gair.tracking import Tracking, masked_errors, tracking_loggers
from gair.training.data import PairsDataModule, band_statistics
from gair.training.system import GAIRPretraining

logger = logging.getLogger(__name__)

SPEC_NAME = "spec.json"
SUMMARY_NAME = "summary.json"
LAST = "last.ckpt"
CORRUPT = f"{LAST}.corrupt-"
"""Name prefix of an unreadable ``last.ckpt`` moved aside (kept when the run is cleared)."""


def _precision(requested: str | None, accelerator: str) -> str:
    if requested:
        return requested
    gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    return "bf16-mixed" if gpu else "32-true"


def checkpoint_load_error(path: Path) -> str | None:
    """Why ``path`` cannot be resumed from (truncated, garbage, or pickled objects that
    ``weights_only`` refuses), or None. Memory-mapped: tensors are not read."""
    try:
        torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # every way of failing to load means the same here
        return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return None


def prepare_run_dir(run_dir: Path, spec: dict[str, Any], resume: bool) -> Path | None:
    """Resume from ``last.ckpt`` only a run that was interrupted with the same spec.

    A finished run (it wrote its summary) or one with other parameters is cleared and
    started afresh: a rerun is asked for because something changed. So is an
    interrupted run whose ``last.ckpt`` cannot be loaded (a run killed while writing
    it); that file is moved aside, not deleted, as ``last.ckpt.corrupt-<time>``.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    spec_path = run_dir / SPEC_NAME
    last = run_dir / "checkpoints" / LAST
    interrupted = (spec_path.is_file()
                   and _what_is_computed(json.loads(spec_path.read_text())) == _what_is_computed(spec)
                   and not (run_dir / SUMMARY_NAME).exists())
    if interrupted and resume and last.is_file() and (error := checkpoint_load_error(last)):
        aside = run_dir / f"{CORRUPT}{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
        os.replace(last, aside)
        logger.warning("Cannot resume from %s (%s); moved it to %s and starting the run "
                       "afresh", last, error, aside)
        interrupted = False
    if not interrupted:
        for child in run_dir.iterdir():
            if child.name.startswith(CORRUPT):
                continue
            shutil.rmtree(child) if child.is_dir() else child.unlink()
        spec_path.write_text(json.dumps(spec, indent=1, sort_keys=True))
    return last if (resume and interrupted and last.is_file()) else None


def _what_is_computed(spec: dict[str, Any]) -> dict[str, Any]:
    """A run specification without its performance settings, which change how fast a
    run goes, not its result: switching ``compile`` on resumes the run."""
    params = {k: v for k, v in spec.get("params", {}).items() if k != "performance"}
    return spec | {"params": params}


# ShardedPairs gives every (rank, worker) slot its own part and an exact length; resuming
# reuses the run folder on purpose.
for _message in (r".*`__len__` could be inaccurate.*", r".*has `__len__` defined.*",
                 r"Checkpoint directory .* exists and is not empty",
                 r"Found \d+ module\(s\) in eval mode"):  # the frozen distillation teachers
    warnings.filterwarnings("ignore", message=_message)


def _progress_bar(trainer_cfg: dict[str, Any]) -> list[TQDMProgressBar]:
    """The bar reads its metrics from the device (a host sync): it refreshes as often as
    the logger writes, not every step."""
    if not trainer_cfg.get("enable_progress_bar", True):
        return []
    return [TQDMProgressBar(refresh_rate=trainer_cfg["log_every_n_steps"])]


def build_training(params: PretrainParams, shards_dir: Path,
                   ) -> tuple[GAIRPretraining, PairsDataModule]:
    """The Lightning system and DataModule that ``params`` describe over the shards in
    ``shards_dir``, with the performance settings applied."""
    samples = shards_dir / "samples.parquet"
    table = pd.read_parquet(samples, columns=["split", "shard"])
    train_shards = sorted({shards_dir / s for s in table.loc[table["split"] == "train", "shard"]})
    preprocessing = params.preprocessing
    if preprocessing.rs_normalization == "official":
        band_mean = list(preprocessing.rs_band_mean or OFFICIAL_BAND_MEAN)
        band_std = list(preprocessing.rs_band_std or OFFICIAL_BAND_STD)
    else:
        band_mean, band_std = band_statistics(train_shards, params.data.band_stats_samples)
    patch_size = int(next(read_shard(train_shards[0]))["rs"].shape[-1])
    system = GAIRPretraining.from_params(params, band_mean, band_std, patch_size)
    contract = PreprocessingContract.for_training(band_mean, band_std, patch_size,
                                                  system.hparams.model,
                                                  system.hparams.preprocessing)
    datamodule = PairsDataModule(
        str(shards_dir), params.data.batch_size, contract, params.data.num_workers,
        params.seed, params.data.shuffle_buffer, preprocessing.rs_jitter,
    )
    performance = params.performance
    torch.set_float32_matmul_precision(performance.float32_matmul_precision)
    if performance.compile:
        system.compile_encoders(performance.compile_backend)
    return system, datamodule


def run_pretraining(spec: dict[str, Any], callbacks: list | None = None,
                    tracking: Tracking | None = None) -> dict[str, Any]:
    """Train GAIR as ``spec`` says; return (and write) the run summary on rank 0.

    ``spec``: ``shards_dir``, ``run_dir`` and ``params`` (dumped :class:`PretrainParams`,
    validated again here: the spec also reaches other ranks as JSON). ``callbacks`` are
    extra Lightning callbacks (e.g. a profiler, or a test's crash); ``tracking`` adds
    TensorBoard and MLflow logs to the CSV logs (None: CSV only).
    """
    params = PretrainParams.model_validate(spec["params"])
    run_dir = Path(spec["run_dir"])
    shards_dir = Path(spec["shards_dir"])
    trainer_cfg = params.trainer.model_dump()
    L.seed_everything(params.seed, workers=True)
    ckpt = prepare_run_dir(run_dir, spec, params.resume) if _is_launcher() else \
        _existing_last(run_dir, params.resume)
    system, datamodule = build_training(params, shards_dir)
    band_mean, band_std = system.hparams.band_mean, system.hparams.band_std
    accelerator = trainer_cfg.pop("accelerator", "auto")
    checkpoint = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best",
                                 monitor=params.checkpoint.monitor,
                                 mode=params.checkpoint.mode)
    # `save_last` only writes when the monitored checkpoint is written; resuming needs the
    # latest state every epoch, so "last" is a checkpoint of its own.
    last = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename=LAST.removesuffix(".ckpt"),
                           monitor=None, save_top_k=1, every_n_epochs=1,
                           enable_version_counter=False)
    trainer = L.Trainer(
        default_root_dir=run_dir, accelerator=accelerator,
        precision=_precision(trainer_cfg.pop("precision", None), accelerator),
        deterministic=not torch.cuda.is_available() or accelerator == "cpu",
        # A new log version per launch: a resumed run appends, never overwrites, its history.
        logger=[CSVLogger(run_dir, name="logs"),
                *tracking_loggers(run_dir, spec, tracking, resuming=ckpt is not None)],
        callbacks=[checkpoint, last, LearningRateMonitor(logging_interval="step"),
                   *_progress_bar(trainer_cfg),
                   *(callbacks or [])],
        enable_model_summary=False,
        **trainer_cfg,
    )
    # weights_only: resuming never runs pickled code from a checkpoint file.
    with masked_errors(tracking):  # an error showing the tracking URI's password
        trainer.fit(system, datamodule=datamodule, ckpt_path=ckpt, weights_only=True)
    summary = {
        "best_checkpoint": checkpoint.best_model_path,
        "last_checkpoint": str(run_dir / "checkpoints" / LAST),
        "best_score": float(checkpoint.best_model_score) if checkpoint.best_model_score is not None else None,
        "metrics": {k: float(v) for k, v in trainer.callback_metrics.items()},
        "epochs": trainer.current_epoch,
        "global_step": trainer.global_step,
        "world_size": trainer.world_size,
        "band_mean": band_mean, "band_std": band_std,
    }
    if trainer.is_global_zero:
        (run_dir / SUMMARY_NAME).write_text(json.dumps(summary, indent=1, sort_keys=True))
    return summary


def pretrain(shards_dir: Path, params: PretrainParams,
             tracking: Tracking | None = None) -> dict[str, Any]:
    """Train GAIR on the shards as ``params`` say; return the run summary.

    One device runs in this process; more devices (or nodes) run under the multi-device
    entry point ``python -m gair.training``, launched here and waited for, so the caller
    (a Kedro node) is never re-executed per rank. ``tracking``: see :func:`run_pretraining`.
    """
    run_dir = Path(params.run_dir)
    spec = {"shards_dir": str(shards_dir), "run_dir": str(run_dir),
            "params": params.model_dump(mode="json")}
    if not params.needs_launcher():
        return run_pretraining(spec, tracking=tracking)
    run_dir.mkdir(parents=True, exist_ok=True)
    spec_file = run_dir.parent / f"{run_dir.name}.{SPEC_NAME}"
    # A tracking URI with a password reaches the ranks through their environment only.
    entry, tracking_env = tracking.to_spec() if tracking is not None else (None, {})
    spec_file.write_text(json.dumps(spec | ({"tracking": entry} if entry else {}), indent=1))
    logger.info("Launching multi-device pretraining: %s -m gair.training %s",
                sys.executable, spec_file)
    subprocess.run([sys.executable, "-m", "gair.training", str(spec_file)], check=True,
                   env=os.environ | tracking_env)
    return json.loads((run_dir / SUMMARY_NAME).read_text())


def _is_launcher() -> bool:
    """True in the process that started the run (not a rank Lightning re-launched)."""
    return os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0"


def _existing_last(run_dir: Path, resume: bool) -> Path | None:
    last = run_dir / "checkpoints" / LAST
    return last if resume and last.is_file() else None


def read_history(run_dir: Path) -> pd.DataFrame:
    """The run's logged metrics across launches (a resumed run logs into a new version)."""
    parts = sorted((run_dir / "logs").glob("version_*/metrics.csv"),
                   key=lambda p: int(p.parent.name.removeprefix("version_")))
    if not parts:
        raise FileNotFoundError(f"{run_dir}: no logged metrics")
    return pd.concat([pd.read_csv(p) for p in parts], ignore_index=True)
