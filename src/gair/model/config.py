"""What a GAIR model is and how it is trained to align: the model's architecture and the
loss's temperatures and weights, the one typed home of each (no torch import).

:class:`gair.parameters.PretrainParams` composes them, so ``parameters_pretrain.yml``'s
``model:`` and ``loss:`` sections validate against these classes, and
:class:`~gair.model.GAIR` and :class:`~gair.model.GAIRLoss` are built from them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

QueryMode = Literal["nili", "bilinear", "bicubic"]
OffsetScale = Literal["grid", "half_grid"]
SeclNegatives = Literal["queue", "batch_and_queue"]


class EncoderConfig(BaseModel):
    """An image encoder: ``name`` (a timm ViT, or ``croma`` for the RS encoder), its input
    size, an optional local weights file (never a hub download) and any architecture
    option of that encoder (``patch_size``, ``depth``, ``num_heads``, ``pooler`` ...)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str
    img_size: int = Field(ge=8)
    weights: str | None = None


class GAIRConfig(BaseModel):
    """Architecture of a GAIR model: all that is needed to rebuild it from a checkpoint."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    embed_dim: int = Field(default=768, ge=8)
    rs_encoder: EncoderConfig = EncoderConfig(
        name="vit_base_patch16_224", img_size=96, patch_size=8, in_chans=10)
    sv_encoder: EncoderConfig = EncoderConfig(name="vit_base_patch16_224", img_size=224)
    location_encoder: dict[str, Any] = {"sigmas": [1.0, 16.0, 256.0], "n_features": 256,
                                        "hidden_dim": 1024, "depth": 3}
    query_mode: QueryMode = "nili"
    imnet_hidden: list[int] = []
    nili_offset_scale: OffsetScale = "grid"

    def to_dict(self) -> dict[str, Any]:
        """Plain values (what a checkpoint stores)."""
        return self.model_dump()

    def architecture(self) -> dict[str, Any]:
        """:meth:`to_dict` without the encoders' initialisation files: what a saved model
        needs to be rebuilt (its weights come with it, not from those files)."""
        values = self.to_dict()
        for part in ("rs_encoder", "sv_encoder", "location_encoder"):
            values[part] = {k: v for k, v in values[part].items() if k != "weights"}
        return values

    @classmethod
    def from_saved(cls, values: dict[str, Any]) -> GAIRConfig:
        """The architecture stored with a model (initialisation files are ignored: the
        weights come from the saved model). Models saved before NILI's offset followed the
        official scale carry no ``nili_offset_scale``: they keep theirs."""
        config = cls(**({"nili_offset_scale": "half_grid"} | dict(values)))
        return cls(**config.architecture())


class LossConfig(BaseModel):
    """Temperatures and weights (defaults of the official code: τ = 0.07, 1 / 0.5 / 0.5;
    distillation 0.2 / 0.2, applied only where a teacher is given).

    ``secl_negatives``: ``queue`` is the official SECL (the queue only, which starts as
    random unit vectors as GeoCLIP's); ``batch_and_queue`` (this project's option) adds the
    batch's other locations, gathered across devices, and masks negatives at the view's own
    place, with the queue starting empty.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    temperature: float = Field(default=0.07, gt=0)
    learnable_temperature: bool = False
    shared_temperature: bool = Field(default=True,
                                     description="one τ for all terms, else one per term")
    weight_incl: float = Field(default=1.0, ge=0)
    weight_secl_sv: float = Field(default=0.5, ge=0)
    weight_secl_rs: float = Field(default=0.5, ge=0)
    queue_size: int = Field(default=4096, ge=0)
    secl_negatives: SeclNegatives = Field(default="batch_and_queue",
                                          description="queue: the official SECL")
    weight_distill_sv: float = Field(default=0.2, ge=0, description="used with teachers.sv_weights")
    weight_distill_rs: float = Field(default=0.2, ge=0, description="used with teachers.rs_weights")

    @model_validator(mode="after")
    def _queue_for_official_secl(self) -> LossConfig:
        if self.secl_negatives == "queue" and self.queue_size < 1:
            raise ValueError("secl_negatives 'queue' takes its negatives from the location "
                             "queue: queue_size must be at least 1")
        return self
