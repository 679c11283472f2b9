"""The Lightning "system": GAIR, its losses, optimiser, schedule and validation metrics."""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING, Any

import lightning as L
import torch
import torch.distributed as dist
from torch import nn

from gair.contract import CONTRACT_KEY, PreprocessingContract
from gair.evaluation.retrieval import retrieval_metrics
from gair.model import GAIR, GAIRConfig, GAIRLoss, LossConfig
from gair.model.encoders import SVEncoder
from gair.model.losses import gather_no_grad

if TYPE_CHECKING:
    from gair.parameters import PretrainParams

TEACHERS = "teachers."


class Teachers(nn.Module):
    """Frozen distillation teachers from local files, always in eval mode, never trained.

    ``sv``: an SV encoder with the student's architecture from ``sv_weights`` (the official
    teacher is an ImageNet-21k ViT-B/16, compared through its ``pooler_output``). ``rs``: a
    copy of the student's freshly built RS encoder, loaded from ``rs_weights``; given the
    student's own initial file (CROMA's), this is the official teacher, a frozen copy of the
    initial encoder, down to the re-initialised patch projection.
    """

    def __init__(self, student: GAIR, sv_weights: str | None, rs_weights: str | None) -> None:
        super().__init__()
        sv = student.config.architecture()["sv_encoder"]
        self.sv = SVEncoder(**sv, weights=sv_weights) if sv_weights else None
        self.rs = None
        self.unsaved_by_files: list[str] = []  # kept fresh: the checkpoint must hold these
        if rs_weights:
            self.rs = copy.deepcopy(student.rs_encoder)
            self.unsaved_by_files = [f"rs.{k}" for k in self.rs.load_weights(rs_weights)]
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> Teachers:
        return super().train(False)

    @torch.no_grad()
    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        out = {}
        if self.sv is not None:
            out["sv"] = self.sv(batch["sv"])
        if self.rs is not None:
            out["rs_global"] = self.rs(batch["rs"])[1]
        return out


class GAIRPretraining(L.LightningModule):
    """Pretrains GAIR with INCL + SECL.

    Optimiser as the official code: AdamW (0.9, 0.95), weight decay on matrices only (not
    biases, norms or temperatures), lr = blr x effective batch / 256, linear warm-up then a
    half-cycle cosine, per step.
    """

    def __init__(self, model: dict[str, Any], loss: dict[str, Any], *, blr: float,
                 weight_decay: float, betas: tuple[float, float], warmup_epochs: float,
                 min_lr: float, band_mean: list[float] | None = None,
                 band_std: list[float] | None = None, accumulate_grad_batches: int, seed: int,
                 patch_size_px: int | None = None, preprocessing: dict[str, Any] | None = None,
                 teachers: dict[str, str | None] | None = None) -> None:
        """The arguments are the plain values a checkpoint stores as its hyperparameters
        (Lightning rebuilds the system from them); :meth:`from_params` gives them from the
        typed parameters, whose defaults are the only ones."""
        super().__init__()
        # The complete configuration is stored (defaults included), so a checkpoint says
        # exactly what it is even after a default changes.
        config = GAIRConfig.model_validate(model)
        model = config.to_dict()
        self.save_hyperparameters()
        self.model = GAIR(config)
        self.loss = GAIRLoss(LossConfig.model_validate(loss))
        teachers = teachers or {}
        self.teachers = Teachers(self.model, teachers.get("sv_weights"),
                                 teachers.get("rs_weights")) \
            if any(teachers.values()) else None
        self._val: list[dict[str, torch.Tensor]] = []

    @classmethod
    def from_params(cls, params: PretrainParams, band_mean: list[float] | None = None,
                    band_std: list[float] | None = None,
                    patch_size_px: int | None = None) -> GAIRPretraining:
        """The system ``params`` describe; band statistics and patch size come from the
        training shards (they go into the checkpoint's preprocessing contract)."""
        return cls(model=params.model.model_dump(mode="json"),
                   loss=params.loss.model_dump(mode="json"),
                   **params.optimizer.model_dump(mode="json"),
                   band_mean=band_mean, band_std=band_std,
                   accumulate_grad_batches=params.trainer.accumulate_grad_batches,
                   seed=params.seed, patch_size_px=patch_size_px,
                   preprocessing=params.preprocessing.model_dump(mode="json"),
                   teachers=params.teachers.model_dump(mode="json"))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Every checkpoint carries its preprocessing contract (read by ``gair.load_model``);
        the frozen teachers are rebuilt from their files, so they are not stored, except
        what no file holds (the RS teacher's re-initialised patch projection)."""
        hp = self.hparams
        if hp.band_mean is not None and hp.patch_size_px is not None:
            checkpoint[CONTRACT_KEY] = PreprocessingContract.for_training(
                hp.band_mean, hp.band_std, hp.patch_size_px, hp.model, hp.preprocessing,
            ).to_dict()
        state = checkpoint.get("state_dict", {})
        kept = {TEACHERS + k for k in self.teachers.unsaved_by_files} if self.teachers else set()
        for key in [k for k in state if k.startswith(TEACHERS) and k not in kept]:
            del state[key]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "nili_offset_scale" not in checkpoint["hyper_parameters"]["model"]:
            raise ValueError("this checkpoint was written before NILI's offset followed the "
                             "official scale: read it with gair.load_model (which keeps its "
                             "scale), or train afresh")
        if self.teachers is not None:
            state = checkpoint["state_dict"]
            for key, value in self.teachers.state_dict().items():
                state.setdefault(TEACHERS + key, value)

    def compile_encoders(self, backend: str = "inductor") -> None:
        """``torch.compile`` the image encoders (and teachers), where the step's time goes.
        In place (``nn.Module.compile``): parameter names and checkpoints are unchanged."""
        encoders = [self.model.rs_encoder, self.model.sv_encoder]
        if self.teachers is not None:
            encoders += [t for t in (self.teachers.sv, self.teachers.rs) if t is not None]
        for encoder in encoders:
            encoder.compile(backend=backend)

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return self.model(batch["rs"], batch["sv"], batch["query"], batch["latlon"])

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        teacher = self.teachers(batch) if self.teachers is not None else None
        terms = self.loss(self(batch), batch["latlon"], self.model.location_encoder, teacher)
        size = len(batch["latlon"])
        self.log("train/loss", terms["loss"], prog_bar=True, batch_size=size)
        for name in GAIRLoss.TERMS + GAIRLoss.DISTILL_TERMS:
            if name in terms:
                self.log(f"train/{name}", terms[name], batch_size=size)
        return terms["loss"]

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        embeddings = self(batch)
        self._val.append({k: embeddings[k].detach() for k in ("sv", "rs_query", "location")}
                         | {"latlon": batch["latlon"]})

    def on_validation_epoch_end(self) -> None:
        if not self._val:
            return
        parts = {k: torch.cat([v[k] for v in self._val]) for k in self._val[0]}
        self._val.clear()
        if dist.is_available() and dist.is_initialized():
            parts = {k: gather_no_grad(v) for k, v in parts.items()}
        self.loss.eval()
        with torch.no_grad():
            terms = self.loss(parts, parts["latlon"], None)
        self.loss.train(self.training)
        metrics = {f"val/{k}": float(v) for k, v in terms.items()}
        metrics |= {f"val/{k}": v for k, v in retrieval_metrics(parts["sv"], parts["rs_query"]).items()}
        # Every rank holds the gathered (whole) validation set, so no further sync is needed.
        for name, value in metrics.items():
            self.log(name, value, prog_bar=name == "val/r@1")

    def configure_optimizers(self):
        decay, no_decay = [], []
        for name, parameter in self.named_parameters():
            if not parameter.requires_grad:
                continue
            (no_decay if parameter.ndim <= 1 or "logit_scale" in name else decay).append(parameter)
        hp = self.hparams
        world = self.trainer.world_size if self.trainer else 1
        batch = self.trainer.datamodule.batch_size if self.trainer and self.trainer.datamodule else 1
        effective = batch * hp.accumulate_grad_batches * world
        lr = hp.blr * effective / 256
        # Fused (one kernel for all parameters) on GPUs; the CPU keeps the reference
        # implementation, whose results the committed CPU runs reproduce.
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": hp.weight_decay},
             {"params": no_decay, "weight_decay": 0.0}],
            lr=lr, betas=tuple(hp.betas), fused=self.device.type == "cuda" or None,
        )
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        epochs = max(self.trainer.max_epochs or 1, 1)
        warmup = min(round(hp.warmup_epochs * total / epochs), total - 1)

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            progress = (step - warmup) / max(total - warmup, 1)
            floor = hp.min_lr / lr if lr > 0 else 0.0
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
