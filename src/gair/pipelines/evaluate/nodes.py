"""Nodes of the ``evaluate`` pipeline. Heavy imports (torch, lightning) stay inside."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from gair.evaluation.sample_world_tasks import (
    SpatialSplit,
    location_gallery,
    patch_masks,
    sample_patches,
    sample_points,
    street_view_targets,
    within_patch_variation,
)
from gair.io.directories import stage_directory
from gair.parameters import (
    EvaluateParams,
    PairParams,
    PretrainParams,
    TrackingParams,
)
from gair.reporting import note_figure

logger = logging.getLogger(__name__)

MODELS_MANIFEST = "models.json"


def prepare_tasks(pairs: gpd.GeoDataFrame, street_views: gpd.GeoDataFrame,
                  tiles: gpd.GeoDataFrame, truth_dir: Path, params: EvaluateParams,
                  pair: PairParams) -> tuple[pd.DataFrame, gpd.GeoDataFrame, gpd.GeoDataFrame,
                                             dict[str, Any]]:
    """The task tables from the sample world's truth, in the pairing step's spatial split:
    street-view targets, RS patches and location points, and their counts."""
    split = SpatialSplit.of_pairs(pairs, pair.split.block_km, dict(pair.split.fractions),
                                  pair.split.seed, pair.patch_size_px)
    tasks = params.tasks
    targets = street_view_targets(pairs, truth_dir, street_views, tuple(tasks.perception))
    patches, patch_counts = sample_patches(tiles, truth_dir, split, pair.patch_size_px,
                                           tasks.patch_stride_px)
    points = sample_points(tiles, truth_dir, split, tasks.points_per_tile, tasks.points_seed)

    def by_split(table: pd.DataFrame) -> dict[str, int]:
        return {str(k): int(v) for k, v in table["split"].value_counts().sort_index().items()}

    report = {"street_views": by_split(targets), "patches": by_split(patches) | patch_counts,
              "points": by_split(points), "within_patch": within_patch_variation(targets)}
    logger.info("Evaluation tasks: %s", report)
    return targets, patches, points, report


def pretrain_baselines(shards_dir: Path, pretrain: PretrainParams, params: EvaluateParams,
                       tracking: TrackingParams, tracking_credentials: dict,
                       staging_dir: str) -> Path:
    """Pretrain what the comparison needs beyond the ``pretrain`` checkpoint, each with
    the same parameters (budget included) but for its seed or its overrides: GAIR at the
    other seeds, and every baseline at the pretraining seed (each logged as ``tracking``
    says, as ``evaluate/<name>``). Their best checkpoints, as ``<name>.ckpt``, go into a
    folder under ``staging_dir`` for the catalog to move in."""
    from gair.tracking import resolve
    from gair.training.run import pretrain as run

    runs = {f"gair_s{s}": {"seed": s} for s in params.seeds if s != pretrain.seed}
    runs |= params.baselines
    checkpoints = {}
    where = resolve(tracking, tracking_credentials)
    for name, overrides in runs.items():
        logger.info("Pretraining %s (%s)", name, overrides)
        run_params = pretrain.with_overrides(overrides
                                             | {"run_dir": str(Path(params.run_dir) / name)})
        summary = run(shards_dir, run_params, where.for_run(
            f"evaluate/{name}", {"gair.pipeline": "evaluate", "gair.model": name}))
        checkpoints[name] = Path(summary["best_checkpoint"] or summary["last_checkpoint"])

    def write(directory: Path) -> dict[str, Any]:
        for name, path in checkpoints.items():
            shutil.copyfile(path, directory / f"{name}.ckpt")
        return {"checkpoints": sorted(checkpoints)}

    return stage_directory(staging_dir, "baselines", write)


def _load_model(source: dict[str, Any], device: str):
    """A frozen model from a manifest entry: a checkpoint, or random weights shaped like one."""
    from gair.embed import load_model, random_like

    if "checkpoint" in source:
        return load_model(Path(source["checkpoint"]), device)
    return random_like(load_model(Path(source["like"]), device), int(source["random_seed"]))


def embed_models(gair_checkpoint: Path, baselines_dir: Path, shards_dir: Path,
                 patches: gpd.GeoDataFrame, points: gpd.GeoDataFrame, tiles: gpd.GeoDataFrame,
                 sentinel2_dir: Path, pretrain: PretrainParams, params: EvaluateParams,
                 pair: PairParams, staging_dir: str) -> Path:
    """The embeddings of every model (GAIR per seed, random weights per seed, baselines),
    as ``<model>/`` GeoParquet and a ``models.json`` manifest, in a folder under
    ``staging_dir`` for the catalog to move in."""
    models: dict[str, dict[str, Any]] = {}  # name -> {"checkpoint"} or {"random_seed", "like"}
    for seed, name in zip(params.seeds, params.gair_models(), strict=True):
        path = gair_checkpoint if seed == pretrain.seed else Path(baselines_dir) / f"{name}.ckpt"
        models[name] = {"checkpoint": path}
    for seed, name in zip(params.seeds, params.random_models(), strict=True):
        models[name] = {"random_seed": seed, "like": gair_checkpoint}
    for name in params.baselines:
        models[name] = {"checkpoint": Path(baselines_dir) / f"{name}.ckpt"}

    def write(directory: Path) -> dict[str, Any]:
        from gair.evaluation.suite import embed_for_tasks

        gallery = location_gallery(tiles, params.tasks.gallery_spacing_m)
        for name, source in models.items():
            logger.info("Embedding with %s", name)
            embed_for_tasks(_load_model(source, params.device), Path(shards_dir), patches,
                            points, gallery, tiles, Path(sentinel2_dir), pair.patch_size_px,
                            params.batch_size).write(directory / name)
        manifest = {name: {k: v if isinstance(v, int) else str(v) for k, v in source.items()}
                    for name, source in models.items()}
        (directory / MODELS_MANIFEST).write_text(json.dumps(manifest, indent=1))
        return {"models": sorted(models)}

    return stage_directory(staging_dir, "embeddings", write)


def score_models(embeddings_dir: Path, street_views: pd.DataFrame, patches: gpd.GeoDataFrame,
                 points: gpd.GeoDataFrame, truth_dir: Path, params: EvaluateParams,
                 pair: PairParams) -> pd.DataFrame:
    """Every task under every protocol for every model: the long results table."""
    from gair.evaluation.suite import (
        ModelEmbeddings,
        chance_levels,
        results_table,
        run_suite,
    )

    masks = patch_masks(patches, truth_dir, pair.patch_size_px)
    manifest = json.loads((Path(embeddings_dir) / MODELS_MANIFEST).read_text())
    per_model = {}
    for name in manifest:
        logger.info("Scoring %s", name)
        embeddings = ModelEmbeddings.read(Path(embeddings_dir) / name)
        per_model[name] = run_suite(embeddings, street_views, masks, params)
        if name == params.gair_models()[0]:
            first = embeddings  # the location-only baseline and the gallery come from it
    if params.location_only:
        per_model["location_only"] = run_suite(first, street_views, masks, params,
                                               features="location")
    gallery = first.gallery[["lat", "lon"]].to_numpy()
    per_model["chance"] = chance_levels(street_views, patches, masks, points, gallery, params)
    return results_table(per_model)


def score_benchmarks(embeddings_dir: Path, params: EvaluateParams,
                     ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The configured real benchmarks (none by default) for every model: results in the
    long format (task ``bench_<name>`` for EuroSAT and the regression targets,
    ``bench_<name>.<target>`` for each class target) and the rejects of their readers
    (a street view the pairs lack is rejected too)."""
    from gair.evaluation import benchmarks as bench
    from gair.evaluation.embeddings import stack
    from gair.evaluation.suite import (
        ModelEmbeddings,
        linear_and_knn,
        results_table,
        score_targets,
    )
    from gair.io.rejects import ReadResult, rejects_frame

    config = params.benchmarks
    manifest = json.loads((Path(embeddings_dir) / MODELS_MANIFEST).read_text())
    models = {}

    def model(name: str):  # loaded once, only if a benchmark needs it
        if name not in models:
            models[name] = _load_model(manifest[name], params.device)
        return models[name]

    per_model: dict[str, dict[str, dict[str, float]]] = {name: {} for name in manifest}
    rejects = []
    if config.eurosat_ms:
        c = config.eurosat_ms
        eurosat = bench.read_eurosat_ms(Path(c.path), max_per_class=c.max_per_class,
                                        size_px=c.size_px)
        logger.info("EuroSAT-MS: %s", eurosat.report())
        rejects.append(eurosat.rejects)
        split = pd.Series(bench.random_splits(len(eurosat.labels), c.fractions, c.seed))
        codes = pd.factorize(pd.Series(eurosat.labels), sort=True)[0]
        for name in manifest:
            pooled = np.concatenate([model(name).encode_rs(eurosat.images[i : i + params.batch_size])[1]
                                     for i in range(0, len(codes), params.batch_size)])
            per_model[name]["bench_eurosat_ms"] = linear_and_knn(pooled, codes, split, params.tasks)
    pairs = {name: ModelEmbeddings.read_pairs(Path(embeddings_dir) / name)
             for name in manifest} if config.street_view_labels or config.street_view_table else {}
    for key, reader in (("street_view_labels", bench.read_label_csvs),
                        ("street_view_table", bench.read_street_view_table)):
        c = getattr(config, key)
        if not c:
            continue
        targets = bench.Targets(tuple(c.regress), tuple(c.classify))
        read = reader(Path(c.path), targets)
        paired = read.accepted["uuid"].isin(next(iter(pairs.values()))["uuid"])  # all alike
        unpaired = rejects_frame({"stage": f"benchmark/{key}", "item": u,
                                  "reason": "street view not paired"}
                                 for u in read.accepted.loc[~paired, "uuid"])
        read = ReadResult(read.accepted[paired],
                          pd.concat([read.rejects, unpaired], ignore_index=True), read.read)
        rejects.append(read.rejects)
        logger.info("%s: %s", key, read.report())
        for name in manifest:
            table = read.accepted.merge(pairs[name][["uuid", "split", "sv"]], on="uuid")
            per_model[name] |= score_targets(stack(table, "sv"), table, targets, params.tasks,
                                             f"bench_{key}")
    if config.points:
        c = config.points
        targets = bench.Targets(tuple(c.regress), tuple(c.classify))
        read = bench.read_points_table(Path(c.path), targets)
        logger.info("points: %s", read.report())
        rejects.append(read.rejects)
        points = read.accepted.copy()
        if "split" not in points:
            points["split"] = bench.block_splits(points["lat"], points["lon"], c.block_deg,
                                                 c.fractions, c.seed)
        for name in manifest:
            features = model(name).encode_locations(points[["lat", "lon"]].to_numpy())
            per_model[name] |= score_targets(features, points, targets, params.tasks, "bench_points")
    all_rejects = pd.concat(rejects, ignore_index=True) if rejects else rejects_frame()
    return results_table(per_model), all_rejects


def report_results(results: pd.DataFrame, benchmark_results: pd.DataFrame,
                   params: EvaluateParams) -> tuple[dict, str, Figure]:
    """``metrics.json`` (flat, for DVC), the Markdown results table and the bar chart."""
    from gair.evaluation.report import (
        bar_chart,
        benchmark_table,
        flat_metrics,
        markdown_table,
        nili_margins,
        seed_comparison,
    )

    models = [m for m in results["model"].unique() if m != "chance"]
    scored = results[results["model"] != "chance"]
    chance = {r.task: r.value for r in results[results["model"] == "chance"].itertuples()}
    comparison = seed_comparison(scored, params.gair_models(), params.random_models())
    metrics = flat_metrics(pd.concat([results, benchmark_results], ignore_index=True))
    metrics["eval/summary/gair_beats_random"] = int(comparison["gair_wins"].sum())
    metrics["eval/summary/downstream_tasks"] = len(comparison)
    groups = {"gair": params.gair_models(), "random": params.random_models()}
    for row in nili_margins(scored, groups).itertuples(index=False):
        if np.isfinite(row.mean):  # a task a seed could not score has no margin
            metrics[f"eval/summary/nili_margin/{row.group}/{row.control}"] = round(row.mean, 6)
    table = markdown_table(scored, models, params.gair_models(), params.random_models(), chance)
    if len(benchmark_results):
        table += "\n" + benchmark_table(benchmark_results)
    logger.info("Evaluation:\n%s", table)
    return metrics, table, bar_chart(scored, models)


def track_evaluation(metrics: dict[str, Any], table: str, params: EvaluateParams,
                     tracking: TrackingParams, tracking_credentials: dict) -> None:
    """The evaluation's ``metrics.json`` values, its parameters and its Markdown table
    (an artifact) as one MLflow run, ``evaluate`` (nothing where MLflow is off)."""
    from gair.tracking import log_run, resolve

    where = resolve(tracking, tracking_credentials).for_run(
        "evaluate", {"gair.pipeline": "evaluate", "gair.seeds": params.seeds})
    log_run(where, metrics, params.model_dump(mode="json"), {"evaluation.md": table})


def plot_retrieval_examples(embeddings_dir: Path, shards_dir: Path,
                            params: EvaluateParams) -> Figure:
    """Test street views of the first GAIR model beside their top-5 RS patches."""
    from gair.evaluation.embeddings import stack
    from gair.evaluation.report import retrieval_examples
    from gair.evaluation.suite import ModelEmbeddings
    from gair.io.shards import SAMPLES_TABLE, read_shard

    pairs = ModelEmbeddings.read(Path(embeddings_dir) / params.gair_models()[0]).pairs
    test = pairs[pairs["split"] == "test"].reset_index(drop=True)
    if test.empty or params.retrieval_examples == 0:
        return note_figure("Retrieval examples", "no test street views to show")
    samples = pd.read_parquet(Path(shards_dir) / SAMPLES_TABLE, columns=["uuid", "shard"])
    wanted = set(test["uuid"])
    images, patches = {}, {}
    for shard in sorted(samples.loc[samples["uuid"].isin(wanted), "shard"].unique()):
        for sample in read_shard(Path(shards_dir) / shard):
            if sample["key"] in wanted:
                images[sample["key"]] = sample["sv"].permute(1, 2, 0).numpy()  # [H, W, 3]
                patches[sample["key"]] = sample["rs"]
    similarity = stack(test, "sv") @ stack(test, "rs_query").T
    rng = np.random.default_rng(0)
    chosen = rng.choice(len(test), size=min(params.retrieval_examples, len(test)), replace=False)
    queries = [{"sv": images[test.loc[i, "uuid"]], "index": int(i)} for i in chosen]
    gallery = [patches[u] for u in test["uuid"]]
    return retrieval_examples(queries, gallery, similarity[chosen])


def plot_geolocalisation(embeddings_dir: Path, params: EvaluateParams) -> Figure:
    """Where the first GAIR model places the test street views, and how far off."""
    from gair.evaluation.embeddings import stack
    from gair.evaluation.report import geolocalisation_map
    from gair.evaluation.retrieval import geolocalise
    from gair.evaluation.suite import ModelEmbeddings

    embeddings = ModelEmbeddings.read(Path(embeddings_dir) / params.gair_models()[0])
    test = embeddings.pairs[embeddings.pairs["split"] == "test"]
    if test.empty:
        return note_figure("Geolocalisation", "no test street views to place")
    true = test[["lat", "lon"]].to_numpy()
    _, predicted, errors = geolocalise(
        stack(test, "sv"), stack(embeddings.gallery, "location"),
        embeddings.gallery[["lat", "lon"]].to_numpy(), true, params.radii_km)
    return geolocalisation_map(true, predicted, errors, test["tile_id"].tolist())
