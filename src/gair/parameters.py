"""Typed parameters of the pipelines (one model per ``parameters_<pipeline>.yml`` key).

Kedro validates a node's ``params:`` input against its annotation before anything runs,
so a misspelt key fails at start-up with the key's name. (The sample world's parameters
live with its generator: :class:`gair.sample_world.SampleWorldConfig`.)
"""

from __future__ import annotations

import copy
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gair.contract import Interpolation, RSNormalization
from gair.geo.distance import GEOLOCALISATION_RADII_KM
from gair.io.images import MAX_IMAGE_PIXELS
from gair.io.l2a import (
    GROUND_RESOLUTION_TOLERANCE,
    L2A_BANDS,
    MASKED_SCL_CLASSES,
    MAX_SHARE_BELOW_OFFSET,
    MAX_TILE_PIXELS,
    WARP_RESAMPLING,
)
from gair.io.streetscapes import PERCEPTION_ATTRIBUTES
from gair.model.config import GAIRConfig, LossConfig
from gair.secrets import redact_url, refuse_password_in_parameters, url_passwords


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StreetscapesParams(_Strict):
    """How to read a Global Streetscapes release under ``streetscapes_dir``."""

    metadata_table: str = "metadata_common_attributes.csv"
    label_tables: tuple[str, ...] = ("perception.csv", "contextual.csv")
    images_dir: str = "images"
    image_check: Literal["markers", "decode", "none"] = "markers"
    require_images: bool = True
    workers: int = Field(default=8, ge=1)
    encoding: str = Field(default="auto", description="tables' text encoding: auto reads a "
                          "UTF-8/UTF-16 byte-order mark, else UTF-8")
    max_image_pixels: int = Field(default=MAX_IMAGE_PIXELS, gt=0)


class Sentinel2Params(_Strict):
    """How to read the Sentinel-2 L2A tiles under ``sentinel2_dir``."""

    band_order: tuple[str, ...] = L2A_BANDS
    processing_baseline: str = Field(default="auto", pattern=r"^(auto|\d\d\.\d\d)$")
    default_processing_baseline: str = Field(default="05.09", pattern=r"^\d\d\.\d\d$")
    pixel_size_m: float = Field(default=10.0, gt=0)
    verify: Literal["full", "mask", "header"] = "full"
    workers: int = Field(default=1, ge=1)
    max_tile_pixels: int = Field(default=MAX_TILE_PIXELS, gt=0)
    warp_resampling: Literal[WARP_RESAMPLING] = Field(
        default="nearest", description="tiles not on a 10 m metric grid (e.g. EPSG:4326) are "
        "warped onto the local UTM zone's")
    ground_resolution_tolerance: float = Field(default=GROUND_RESOLUTION_TOLERANCE, gt=0, lt=1)
    offset_check: Literal["reject", "warn", "off"] = Field(
        default="reject", description="a tile whose BOA offset contradicts its data")
    max_share_below_offset: float = Field(default=MAX_SHARE_BELOW_OFFSET, ge=0, le=1)


class IngestParams(_Strict):
    streetscapes: StreetscapesParams = StreetscapesParams()
    sentinel2: Sentinel2Params = Sentinel2Params()


class SplitParams(_Strict):
    fractions: dict[str, float] = {"train": 0.8, "val": 0.1, "test": 0.1}
    block_km: float = Field(default=2.0, gt=0, description="spatial block edge")
    seed: int = 0

    @field_validator("fractions")
    @classmethod
    def _positive(cls, value: dict[str, float]) -> dict[str, float]:
        if not value or any(v < 0 for v in value.values()) or sum(value.values()) <= 0:
            raise ValueError(f"split fractions must be non-negative and not all 0: {value}")
        return value


class ShardParams(_Strict):
    samples_per_shard: int = Field(default=256, ge=1)
    sv_short_side_px: int = Field(default=256, ge=16, description="street views are resized down to this")
    jpeg_quality: int = Field(default=90, ge=30, le=100)
    workers: int = Field(default=2, ge=1)


class PairParams(_Strict):
    patch_size_px: int = Field(default=96, ge=8)
    min_valid_fraction: float = Field(default=0.5, ge=0.0, le=1.0)
    max_days_apart: float | None = Field(
        default=None, gt=0, description="a view pairs only with tiles sensed within this "
        "many days of its capture (unknown dates never); null: any date")
    split: SplitParams = SplitParams()
    shards: ShardParams = ShardParams()


class OptimizerParams(_Strict):
    blr: float = Field(default=1.5e-6, gt=0, description="lr = blr x effective batch / 256")
    weight_decay: float = Field(default=0.05, ge=0)
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_epochs: float = Field(default=10, ge=0)
    min_lr: float = Field(default=0.0, ge=0)


class DataParams(_Strict):
    batch_size: int = Field(default=256, ge=1, description="per device")
    num_workers: int = Field(default=0, ge=0)
    shuffle_buffer: int = Field(default=256, ge=1)
    band_stats_samples: int = Field(default=512, ge=1)


class TrainerParams(BaseModel):
    """Passed to ``lightning.Trainer`` (extra keys allowed: any Trainer argument)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    max_epochs: int = Field(default=300, ge=1)
    accelerator: str = "auto"
    devices: int | str = 1
    num_nodes: int = Field(default=1, ge=1)
    precision: str | None = None  # None: bf16-mixed on GPU, 32-true on CPU
    accumulate_grad_batches: int = Field(default=1, ge=1)
    log_every_n_steps: int = Field(default=10, ge=1)


class PreprocessingParams(_Strict):
    """How inputs are prepared (stored in every checkpoint's contract).

    ``zscore``: per-band statistics of the training shards; ``official``: the official
    GAIR statistics (or ``rs_band_mean``/``rs_band_std``) and its uint8 scaling."""

    rs_normalization: RSNormalization = "zscore"
    rs_band_mean: list[float] | None = None
    rs_band_std: list[float] | None = None
    rs_interpolation: Interpolation = "area"
    sv_interpolation: Literal["bilinear", "bicubic"] = "bilinear"
    rs_jitter: float = Field(default=0.0, ge=0, le=1,
                             description="p of the official RS jitter (official 0.7)")

    @field_validator("rs_band_mean", "rs_band_std")
    @classmethod
    def _statistics_need_official(cls, value: list[float] | None, info) -> list[float] | None:
        if value is not None and info.data.get("rs_normalization") != "official":
            raise ValueError(f"{info.field_name} is used by rs_normalization: official; "
                             "zscore computes its statistics from the training shards")
        return value

    @field_validator("rs_jitter")
    @classmethod
    def _jitter_needs_official(cls, value: float, info) -> float:
        if value and info.data.get("rs_normalization") != "official":
            raise ValueError("rs_jitter is the official jitter on [0, 1] inputs: it needs "
                             "rs_normalization: official")
        return value


class TeacherParams(_Strict):
    """Frozen distillation teachers, local files only; none configured: no distillation."""

    sv_weights: str | None = Field(default=None, description="ImageNet-21k ViT-B/16 file")
    rs_weights: str | None = Field(default=None, description="e.g. CROMA_base.pt")


class PerformanceParams(_Strict):
    """How fast a step runs, never what it computes (not stored in checkpoints).

    ``compile``: ``torch.compile`` the RS and SV encoders and the teachers (static
    shapes: training batches are all full; the first steps compile). ``float32_matmul_
    precision``: ``high`` lets float32 matmuls use TF32 on GPUs; under bf16-mixed the
    only float32 matmuls are those kept in float32 for their precision (the losses'
    logits), so the default stays ``highest``."""

    compile: bool = False
    compile_backend: str = "inductor"
    float32_matmul_precision: Literal["highest", "high", "medium"] = "highest"


class CheckpointParams(_Strict):
    # Median rank, not R@1: on a few hundred validation views R@1 moves in steps of one hit
    # and picked an early epoch by chance (the sample world's test R@1 fell to chance).
    monitor: str = "val/median_rank"
    mode: Literal["max", "min"] = "min"


class PretrainParams(_Strict):
    seed: int = 0
    run_dir: str = "data/06_models/pretrain_run"
    resume: bool = True
    model: GAIRConfig = GAIRConfig()
    loss: LossConfig = LossConfig()
    preprocessing: PreprocessingParams = PreprocessingParams()
    teachers: TeacherParams = TeacherParams()
    optimizer: OptimizerParams = OptimizerParams()
    data: DataParams = DataParams()
    trainer: TrainerParams = TrainerParams()
    performance: PerformanceParams = PerformanceParams()
    checkpoint: CheckpointParams = CheckpointParams()

    def with_overrides(self, overrides: dict[str, Any]) -> PretrainParams:
        """These parameters with dotted keys (``loss.temperature``, ``seed``) replaced,
        validated again (an unknown key or a bad value fails here)."""
        return PretrainParams(**_with_dotted(self.model_dump(mode="json"), overrides))

    def needs_launcher(self) -> bool:
        """More than one process: run under the multi-device entry point, not in Kedro."""
        devices = self.trainer.devices
        many = (isinstance(devices, int) and devices > 1) or devices == -1 or (
            isinstance(devices, str) and devices not in ("1", "auto"))
        return many or self.trainer.num_nodes > 1


class DistributionParams(_Strict):
    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: list[Any] | None = None


class SweepParams(_Strict):
    """An Optuna study over pretraining hyperparameters (``parameters_sweep.yml``)."""

    # A refused value is not echoed in the error: it may hold a password.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    study_name: str = "gair-pretrain"
    storage: str = Field(default="journal", description="journal | sqlite | env:VAR | "
                         "credentials:NAME | a database URL without a password")
    storage_dir: str = "data/06_models/sweep"
    metric: str = "val/r@1"
    direction: Literal["maximize", "minimize"] = "maximize"
    n_trials: int = Field(default=8, ge=1, description="trials this worker runs")
    total_trials: int = Field(default=8, ge=1, description="budget across all workers")
    seed: int = 0
    pruner: dict[str, Any] = {"type": "median"}  # median|successive_halving|hyperband|threshold|none
    budget: dict[str, Any] = {}
    search_space: dict[str, DistributionParams]
    heartbeat_interval: int = Field(default=60, ge=1)
    grace_period: int = Field(default=180, ge=1)

    @field_validator("storage")
    @classmethod
    def _no_password(cls, value: str) -> str:
        if "://" not in value:  # journal, sqlite, env:VAR, credentials:NAME
            return value
        return refuse_password_in_parameters(value)


def _with_dotted(values: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A copy of nested ``values`` with dotted keys (``loss.temperature``) replaced."""
    merged = copy.deepcopy(values)
    for dotted, value in overrides.items():
        node = merged
        *parents, leaf = dotted.split(".")
        for key in parents:
            if not isinstance(node.get(key), dict):
                raise KeyError(f"{dotted}: {key!r} is not a section of the pretrain parameters")
            node = node[key]
        node[leaf] = value  # an unknown key fails when the parameters are validated
    return merged


class EvaluationTaskParams(_Strict):
    patch_stride_px: int = Field(default=32, ge=1, description="grid of RS task patches")
    points_per_tile: int = Field(default=1000, ge=1, description="location-task points")
    points_seed: int = 0
    gallery_spacing_m: float = Field(default=100.0, gt=0, description="geolocalisation gallery")
    labels_per_class: int | None = Field(default=None, ge=1,
                                         description="low-label regime; null: all train labels")
    label_draws: int = Field(default=1, ge=1,
                             description="low-label scores: mean over this many label draws")
    perception: list[str] = Field(default=list(PERCEPTION_ATTRIBUTES), min_length=1,
                                  description="the perception task's target columns")


class BenchmarkParams(_Strict):
    """One real benchmark: where it is and how to split it."""

    path: str
    regress: list[str] = Field(default=[], description="numeric targets: one ridge probe")
    classify: list[str] = Field(default=[], description="class targets: one probe each")
    max_per_class: int | None = Field(default=None, ge=1, description="EuroSAT images per class")
    size_px: int = Field(default=64, ge=1, description="EuroSAT image size")
    fractions: dict[str, float] = {"train": 0.6, "val": 0.2, "test": 0.2}
    seed: int = 0
    block_deg: float = Field(default=0.1, gt=0, description="points: spatial blocks")


class BenchmarksParams(_Strict):
    eurosat_ms: BenchmarkParams | None = None          # <path>/<Class>/*.tif
    street_view_labels: BenchmarkParams | None = None  # <path>/<label>.csv per target
    street_view_table: BenchmarkParams | None = None   # uuid + targets
    points: BenchmarkParams | None = None              # lat, lon (+ split) + targets


class EvaluateParams(_Strict):
    """The ``evaluate`` pipeline (``parameters_evaluate.yml``)."""

    run_dir: str = "data/06_models/evaluate_runs"
    seeds: list[int] = Field(default=[0, 1], min_length=1,
                             description="GAIR pretraining seeds = random-weight init seeds")
    baselines: dict[str, dict[str, Any]] = {}  # name -> pretrain overrides (dotted keys)
    location_only: bool = True
    device: str = "cpu"
    batch_size: int = Field(default=64, ge=1)
    radii_km: list[float] = Field(default=list(GEOLOCALISATION_RADII_KM), min_length=1,
                                  description="geolocalisation accuracy radii")
    retrieval_examples: int = Field(default=4, ge=0)
    tasks: EvaluationTaskParams = EvaluationTaskParams()
    benchmarks: BenchmarksParams = BenchmarksParams()

    def gair_models(self) -> list[str]:
        return [f"gair_s{s}" for s in self.seeds]

    def random_models(self) -> list[str]:
        return [f"random_s{s}" for s in self.seeds]


class EmbedParams(_Strict):
    """The ``embed`` pipeline (``parameters_embed.yml``)."""

    lat_column: str = "lat"
    lon_column: str = "lon"
    device: str = "cpu"
    batch_size: int = Field(default=64, ge=1)


class TrackingParams(_Strict):
    """Experiment tracking beside the CSV logs (``tracking:`` in ``parameters.yml``): MLflow
    runs for pretraining, sweep trials and evaluation metrics, and TensorBoard event files."""

    # A refused value is not echoed in the error: it may hold a password.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    mlflow: bool = True
    tracking_uri: str | None = Field(
        default=None, description="null: $MLFLOW_TRACKING_URI if set, else a SQLite store in "
        "local_dir | env:VAR | credentials:NAME | a URI without a password")
    experiment: str = Field(default="gair", min_length=1)
    tensorboard: bool = True
    local_dir: str = Field(default="mlruns", description="the local MLflow store (mlflow.db, "
                           "artifacts/) and the TensorBoard logs (tensorboard/)")

    @field_validator("tracking_uri")
    @classmethod
    def _no_password(cls, value: str | None) -> str | None:
        if value is None or "://" not in value:  # env:VAR, credentials:NAME
            return value
        if url_passwords(value):
            raise ValueError(
                f"tracking.tracking_uri {redact_url(value)} holds a password, and parameters "
                "are shown in plain text (kedro viz, logs). Put the URI in "
                "conf/local/credentials.yml as `mlflow_tracking: {url: ...}` and set "
                "`tracking_uri: credentials:mlflow_tracking`, or export it as "
                "MLFLOW_TRACKING_URI and leave `tracking_uri: null`")
        return value


# ---- acquire (appended block: Sentinel-2 L2A from a STAC catalogue) ---------------------


class AcquireAreaParams(_Strict):
    """How windows are grouped into STAC searches: ``mgrs`` (the 100 km MGRS square of the
    window, as UTM zone + 100 km cell) or a ``grid`` of ``grid_deg`` lat/lon cells."""

    by: Literal["mgrs", "grid"] = "mgrs"
    grid_deg: float = Field(default=0.1, gt=0, le=10)


class AcquireHttpParams(_Strict):
    """Retries and time-outs of STAC requests and COG range reads (GDAL's /vsicurl/)."""

    max_retry: int = Field(default=3, ge=0)
    retry_delay_s: float = Field(default=1.0, ge=0, description="back-off base")
    timeout_s: float = Field(default=30.0, gt=0)


class AcquireParams(_Strict):
    """``acquire``: Sentinel-2 L2A tiles for the street views from a STAC API
    (see :func:`gair.acquire.acquire_sentinel2` for every option)."""

    provider: Literal["earth_search", "planetary_computer"] = "earth_search"
    url: str | None = Field(default=None, description="null: the provider's API")
    collection: str | None = Field(default=None, description="null: sentinel-2-l2a")
    asset_keys: dict[str, str] = Field(default={}, description="band -> asset key overrides")
    output_dir: str = Field(min_length=1, description="the Sentinel-2 folder ingest reads")
    tile_size_px: int = Field(default=96, ge=16, description="one GAIR patch: 960 m")
    area: AcquireAreaParams = AcquireAreaParams()
    days_window: int = Field(default=60, ge=0)
    default_date_range: tuple[str, str] = ("2023-01-01", "2023-12-31")
    max_cloud_cover: float = Field(default=30.0, ge=0, le=100)
    max_masked_fraction: float = Field(default=0.5, ge=0, le=1)
    masked_scl_classes: tuple[int, ...] = MASKED_SCL_CLASSES
    workers: int = Field(default=4, ge=1)
    page_size: int = Field(default=100, ge=1)
    max_items_per_area: int = Field(default=500, ge=1)
    http: AcquireHttpParams = AcquireHttpParams()
    progress: bool = True
    recheck_unusable: bool = False

    @field_validator("default_date_range")
    @classmethod
    def _ordered_dates(cls, value: tuple[str, str]) -> tuple[str, str]:
        import pandas as pd

        start, end = (pd.Timestamp(v) for v in value)
        if start > end:
            raise ValueError(f"default_date_range starts after it ends: {value}")
        return value
