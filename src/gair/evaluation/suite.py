"""The evaluation suite: every task, under every protocol, for every model's embeddings.

A model's embeddings live in one folder (see :class:`ModelEmbeddings`); the suite turns
them and the task tables into a long results table (task, model, metric, value), from
which :mod:`gair.evaluation.report` builds ``metrics.json``, the Markdown table and plots.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import geopandas as gpd
import numpy as np
import pandas as pd
import torch

from gair.embed.api import encode_tile_patches
from gair.embed.model import FrozenGAIR
from gair.evaluation.embeddings import embed_pairs, stack
from gair.evaluation.probes import (
    SPLITS,
    EmptySplitError,
    Labelled,
    few_labels,
    knn_classifier,
    linear_classifier,
    mean_iou,
    r2_per_target,
    ridge_regressor,
    segmentation_probe,
)
from gair.evaluation.retrieval import geolocalise, retrieval_metrics
from gair.geo.distance import haversine_km

if TYPE_CHECKING:
    from gair.evaluation.benchmarks import Targets
    from gair.parameters import EvaluateParams, EvaluationTaskParams

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class Task:
    """One downstream task: its family, what it is scored by, and whether higher is better."""

    name: str
    title: str
    headline: str
    higher_is_better: bool = True


TASKS: tuple[Task, ...] = (
    Task("sv_landcover", "SV land-cover classification (acc)", "acc"),
    Task("sv_perception", "SV perception regression (R²)", "r2"),
    Task("rs_landcover", "RS patch land-cover classification (acc)", "acc"),
    Task("rs_segmentation", "RS land-cover segmentation (mIoU)", "miou"),
    Task("loc_landcover", "Location-only land-cover classification (acc)", "acc"),
    Task("fused_affluence", "SV+RS+location affluence regression (R²)", "r2"),
    Task("retrieval", "SV -> NILI-queried RS retrieval, test split (R@1)", "r@1"),
    Task("geolocalisation", "SV geolocalisation by location retrieval (median km)",
         "median_km", higher_is_better=False),
    Task("retrieval_nili_patch", "SV -> NILI at the view, patch-level R@1", "patch_r@1"),
    Task("retrieval_centre", "control: SV -> RS query at the patch centre, patch-level R@1",
         "patch_r@1"),
    Task("fused_affluence_centre", "control: SV+RS at patch centre+location affluence (R²)",
         "r2"),
    Task("fused_affluence_global", "control: SV+global RS+location affluence (R²)", "r2"),
    Task("fused_landcover", "SV+RS+location land cover at the view (acc)", "acc"),
    Task("fused_landcover_centre", "control: SV+RS at patch centre+location land cover (acc)",
         "acc"),
    Task("fused_landcover_global", "control: SV+global RS+location land cover (acc)", "acc"),
)
DOWNSTREAM = tuple(t.name for t in TASKS[:6])
"""The six transfer tasks (one per family the paper covers)."""

NILI_CONTROLS = (("fused_affluence", "fused_affluence_centre"),
                 ("fused_affluence", "fused_affluence_global"),
                 ("fused_landcover", "fused_landcover_centre"),
                 ("fused_landcover", "fused_landcover_global"),
                 ("retrieval_nili_patch", "retrieval_centre"))
"""(NILI task, position-free control): what the query at the street view adds over the
query at the patch centre and over the global RS embedding, on the same items."""


@dataclass
class ModelEmbeddings:
    """Frozen embeddings of one model for every task, as written under ``<folder>/<model>/``:
    ``pairs.parquet`` (street views: ``sv``, ``rs_query``, ``rs_global``, ``location``),
    ``patches.parquet`` (``rs_global``, ``location`` of the centre) with ``patch_tokens.npy`` (token grids),
    ``points.parquet`` and ``gallery.parquet`` (``location``). All GeoParquet, EPSG:4326."""

    pairs: gpd.GeoDataFrame
    patches: gpd.GeoDataFrame
    tokens: np.ndarray
    points: gpd.GeoDataFrame
    gallery: gpd.GeoDataFrame

    FILES = ("pairs", "patches", "points", "gallery")

    def write(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for name in self.FILES:
            getattr(self, name).to_parquet(folder / f"{name}.parquet")
        np.save(folder / "patch_tokens.npy", self.tokens)

    @staticmethod
    def read_pairs(folder: Path) -> gpd.GeoDataFrame:
        """Only the per-street-view embeddings (without the large token grids)."""
        return gpd.read_parquet(folder / "pairs.parquet")

    @classmethod
    def read(cls, folder: Path) -> ModelEmbeddings:
        tables = {name: gpd.read_parquet(folder / f"{name}.parquet") for name in cls.FILES}
        return cls(tokens=np.load(folder / "patch_tokens.npy"), **tables)


def _with_column(table: gpd.GeoDataFrame, name: str, values: np.ndarray) -> gpd.GeoDataFrame:
    table = table.copy()
    table[name] = list(values.astype(np.float32))
    return table


def embed_for_tasks(frozen: FrozenGAIR, shards_dir: Path, patches: gpd.GeoDataFrame,
                    points: gpd.GeoDataFrame, gallery_latlon: np.ndarray, tiles: pd.DataFrame,
                    sentinel2_dir: Path, patch_size: int, batch_size: int) -> ModelEmbeddings:
    """All the embeddings the suite needs from one frozen model."""
    tokens, pooled = encode_tile_patches(frozen, patches, tiles, sentinel2_dir, patch_size,
                                         batch_size)
    centres = patches.geometry.get_coordinates()[["y", "x"]].to_numpy()  # (lat, lon)
    gallery = gpd.GeoDataFrame(
        {"lat": gallery_latlon[:, 0], "lon": gallery_latlon[:, 1]},
        geometry=gpd.points_from_xy(gallery_latlon[:, 1], gallery_latlon[:, 0]), crs="EPSG:4326")
    return ModelEmbeddings(
        pairs=embed_pairs(frozen, shards_dir, batch_size),
        patches=_with_column(_with_column(patches, "rs_global", pooled), "location",
                             frozen.encode_locations(centres)),
        tokens=tokens.astype(np.float16),  # token grids are large; half precision is plenty
        points=_with_column(points, "location",
                            frozen.encode_locations(points[["lat", "lon"]].to_numpy())),
        gallery=_with_column(gallery, "location", frozen.encode_locations(gallery_latlon)),
    )


def _splits(features: np.ndarray, targets: np.ndarray, split: pd.Series,
            train_subset: Callable[[np.ndarray], np.ndarray] | None = None) -> dict[str, Labelled]:
    out = {}
    for name in SPLITS:
        index = np.flatnonzero(split.to_numpy() == name)
        if name == "train" and train_subset is not None:
            index = index[train_subset(targets[index])]
        out[name] = Labelled(features[index], targets[index])
    return out


def linear_and_knn(features: np.ndarray, labels: np.ndarray, split: pd.Series,
                   tasks: EvaluationTaskParams) -> dict[str, float]:
    """Linear-probe accuracy and macro-F1 and kNN accuracy of a classification task.

    In the low-label regime the scores are means over ``tasks.label_draws`` draws of
    the train labels (seeds ``tasks.points_seed``, ``+ 1``, ...): one draw of a few labels per
    class decides too much on its own.
    """
    draws = tasks.label_draws if tasks.labels_per_class is not None else 1
    scores = []
    for draw in range(draws):
        subset = partial(few_labels, per_class=tasks.labels_per_class,
                         seed=tasks.points_seed + draw)
        splits = _splits(features, labels, split, subset)
        linear = linear_classifier(splits)
        knn = knn_classifier(splits)
        scores.append({"acc": linear["acc"], "macro_f1": linear["macro_f1"],
                       "knn_acc": knn["acc"]})
    mean = {key: float(np.mean([s[key] for s in scores])) for key in scores[0]}
    return mean | {"n_train": float(len(splits["train"].y)),
                   "n_test": float(len(splits["test"].y))}


def _regression(features: np.ndarray, targets: np.ndarray, split: pd.Series,
                names: tuple[str, ...]) -> dict[str, float]:
    splits = _splits(features, targets, split)
    result = ridge_regressor(splits, target_names=names)
    result.pop("alpha")
    return result | {"n_train": float(len(splits["train"].y)),
                     "n_test": float(len(splits["test"].y))}


def _patch_level(metrics: dict[str, float]) -> dict[str, float]:
    """The patch-level retrieval metrics (a query at the patch centre is the same for every
    view of the patch, so only finding the patch can be compared)."""
    return {k: v for k, v in metrics.items() if k.startswith(("patch_", "chance_patch"))}


def _aligned(embeddings: ModelEmbeddings, street_views: pd.DataFrame) -> pd.DataFrame:
    """The street-view targets joined to the embedded pairs (same rows, same order)."""
    shared = [c for c in embeddings.pairs.columns if c in street_views.columns and c != "uuid"]
    pairs = embeddings.pairs.drop(columns=[*shared, "geometry"])
    table = street_views.merge(pairs, on="uuid", how="inner", validate="one_to_one")
    if len(table) != len(street_views):
        raise ValueError(f"{len(street_views) - len(table)} street views have no embedding")
    return table


def run_suite(embeddings: ModelEmbeddings, street_views: pd.DataFrame, masks: np.ndarray,
              params: EvaluateParams, features: str = "gair",
              ) -> dict[str, dict[str, float]]:
    """Metrics per task for one model's embeddings.

    ``features="gair"`` uses each task's natural embedding (SV, global RS, token grid,
    location, SV+queried RS+location); ``features="location"`` replaces every one by the
    location embedding of the item's place (the location-encoder-only baseline; tasks
    without a place per item are skipped). A task with an empty split is left out with a
    warning.
    """
    if features not in ("gair", "location"):
        raise ValueError(f"features must be 'gair' or 'location', not {features!r}")
    location_only = features == "location"
    sv = _aligned(embeddings, street_views)
    patches, points = embeddings.patches, embeddings.points
    sv_features = stack(sv, "location" if location_only else "sv")
    patch_features = stack(patches, "location" if location_only else "rs_global")
    def fused(rs: str) -> np.ndarray:
        if location_only:
            return stack(sv, "location")
        return np.concatenate([stack(sv, k) for k in ("sv", rs, "location")], axis=1)

    test = sv[sv["split"] == "test"]

    def segmentation() -> dict[str, float]:
        result = segmentation_probe(
            _splits(embeddings.tokens.astype(np.float32), masks, patches["split"]))
        result.pop("C")
        return result

    def retrieval(rs: str = "rs_query") -> dict[str, float]:
        if test.empty:
            raise EmptySplitError("no test street views")
        return retrieval_metrics(torch.from_numpy(stack(test, "sv")),
                                 torch.from_numpy(stack(test, rs)),
                                 groups=test["patch_id"].to_numpy())

    def geolocalisation() -> dict[str, float]:
        if test.empty:
            raise EmptySplitError("no test street views")
        gallery = embeddings.gallery
        return geolocalise(stack(test, "sv"), stack(gallery, "location"),
                           gallery[["lat", "lon"]].to_numpy(), test[["lat", "lon"]].to_numpy(),
                           params.radii_km)[0]

    tasks: dict[str, Callable[[], dict[str, float]]] = {
        "sv_landcover": lambda: linear_and_knn(sv_features, sv["landcover"].to_numpy(),
                                               sv["split"], params.tasks),
        "sv_perception": lambda: _regression(sv_features,
                                             sv[list(params.tasks.perception)].to_numpy(),
                                             sv["split"], tuple(params.tasks.perception)),
        "rs_landcover": lambda: linear_and_knn(patch_features, patches["landcover"].to_numpy(),
                                               patches["split"], params.tasks),
        "rs_segmentation": segmentation,
        "loc_landcover": lambda: linear_and_knn(stack(points, "location"),
                                                points["landcover"].to_numpy(),
                                                points["split"], params.tasks),
        "fused_affluence": lambda: _regression(fused("rs_query"), sv["affluence"].to_numpy(),
                                               sv["split"], ("affluence",)),
        "retrieval": retrieval,
        "geolocalisation": geolocalisation,
        # Position-free controls (the same items without the view's position in the patch).
        "retrieval_nili_patch": lambda: _patch_level(retrieval("rs_query")),
        "retrieval_centre": lambda: _patch_level(retrieval("rs_centre")),
        "fused_affluence_centre": lambda: _regression(fused("rs_centre"),
                                                      sv["affluence"].to_numpy(), sv["split"],
                                                      ("affluence",)),
        "fused_affluence_global": lambda: _regression(fused("rs_global"),
                                                      sv["affluence"].to_numpy(), sv["split"],
                                                      ("affluence",)),
        # Land cover at the view varies inside most patches (affluence mostly does not).
        "fused_landcover": lambda: linear_and_knn(fused("rs_query"), sv["landcover"].to_numpy(),
                                                  sv["split"], params.tasks),
        "fused_landcover_centre": lambda: linear_and_knn(
            fused("rs_centre"), sv["landcover"].to_numpy(), sv["split"], params.tasks),
        "fused_landcover_global": lambda: linear_and_knn(
            fused("rs_global"), sv["landcover"].to_numpy(), sv["split"], params.tasks),
    }
    if location_only:  # no place per token; the location task is this model's own
        for name in ("rs_segmentation", "loc_landcover", "retrieval", "geolocalisation",
                     "retrieval_nili_patch", "retrieval_centre", "fused_affluence_centre",
                     "fused_affluence_global", "fused_landcover_centre",
                     "fused_landcover_global"):
            tasks.pop(name)
    results: dict[str, dict[str, float]] = {}
    for name, task in tasks.items():
        try:
            results[name] = task()
        except EmptySplitError as error:
            logger.warning("Task %s left out: %s", name, error)
    return results


def _patch_chance(test: pd.DataFrame) -> float:
    """Chance of patch-level R@1: the mean share of the test views in a view's own patch."""
    if test.empty:
        raise ValueError("no test street views")
    sizes = test.groupby("patch_id")["patch_id"].transform("size").to_numpy(np.float64)
    return float(sizes.mean()) / len(test)


def results_table(per_model: dict[str, dict[str, dict[str, float]]]) -> pd.DataFrame:
    """Long table (task, model, metric, value) of every model's results."""
    rows = [{"task": task, "model": model, "metric": metric, "value": float(value)}
            for model, tasks in per_model.items() for task, metrics in tasks.items()
            for metric, value in metrics.items()]
    return pd.DataFrame(rows, columns=["task", "model", "metric", "value"])


def chance_levels(street_views: pd.DataFrame, patches: pd.DataFrame, masks: np.ndarray,
                  points: pd.DataFrame, gallery_latlon: np.ndarray,
                  params: EvaluateParams) -> dict[str, dict[str, float]]:
    """What needs no features: the train majority class (classification, segmentation),
    the train mean (regression), a uniformly random pick (retrieval, geolocalisation)."""

    def majority(labels: np.ndarray, split: pd.Series) -> float:
        train, test = labels[split.to_numpy() == "train"], labels[split.to_numpy() == "test"]
        return float((test == np.bincount(train.ravel()).argmax()).mean())

    def mean_r2(targets: np.ndarray, split: pd.Series) -> float:
        train = targets[split.to_numpy() == "train"]
        test = targets[split.to_numpy() == "test"]
        return float(r2_per_target(test.reshape(len(test), -1),
                                   np.broadcast_to(train.mean(axis=0), test.shape).reshape(
                                       len(test), -1)).mean())

    sv_split = street_views["split"]
    test = street_views[sv_split == "test"]

    def geolocalisation() -> float:
        picks = gallery_latlon[np.random.default_rng(params.tasks.points_seed).integers(
            0, len(gallery_latlon), len(test))]
        return float(np.median(haversine_km(test["lat"].to_numpy(), test["lon"].to_numpy(),
                                            picks[:, 0], picks[:, 1])))

    def segmentation() -> float:
        split = patches["split"].to_numpy()
        majority_pixel = np.bincount(masks[split == "train"].ravel()).argmax()
        test_masks = masks[split == "test"]
        return mean_iou(test_masks, np.full_like(test_masks, majority_pixel))[0]

    levels = {
        ("sv_landcover", "acc"): lambda: majority(street_views["landcover"].to_numpy(), sv_split),
        ("fused_landcover", "acc"): lambda: majority(street_views["landcover"].to_numpy(),
                                                     sv_split),
        ("sv_perception", "r2"): lambda: mean_r2(
            street_views[list(params.tasks.perception)].to_numpy(), sv_split),
        ("rs_landcover", "acc"): lambda: majority(patches["landcover"].to_numpy(),
                                                  patches["split"]),
        ("rs_segmentation", "miou"): segmentation,
        ("loc_landcover", "acc"): lambda: majority(points["landcover"].to_numpy(),
                                                   points["split"]),
        ("fused_affluence", "r2"): lambda: mean_r2(street_views["affluence"].to_numpy(),
                                                   sv_split),
        ("retrieval", "r@1"): lambda: 1.0 / len(test),
        ("retrieval_nili_patch", "patch_r@1"): lambda: _patch_chance(test),
        ("retrieval_centre", "patch_r@1"): lambda: _patch_chance(test),
        ("geolocalisation", "median_km"): geolocalisation,
    }
    out: dict[str, dict[str, float]] = {}
    for (task, metric), level in levels.items():
        with np.errstate(all="ignore"):
            try:
                value = level()
            except (ValueError, ZeroDivisionError):  # an empty split
                continue
        if np.isfinite(value):
            out[task] = {metric: value}
    return out



def score_targets(features: np.ndarray, table: pd.DataFrame, targets: Targets,
                  tasks: EvaluationTaskParams, task: str) -> dict[str, dict[str, float]]:
    """Probes of ``targets`` of ``table`` (with a ``split`` column) from ``features``: one
    ridge probe of the regression targets together (task ``task``) and a classification
    probe per class target (task ``<task>.<target>``)."""
    out = {}
    if targets.regress:
        out[task] = _regression(features, table[list(targets.regress)].to_numpy(np.float64),
                                table["split"], targets.regress)
    for target in targets.classify:
        codes = pd.factorize(table[target].astype(str), sort=True)[0]
        out[f"{task}.{target}"] = linear_and_knn(features, codes, table["split"], tasks)
    return out
