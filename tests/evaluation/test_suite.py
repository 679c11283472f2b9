"""The evaluation suite on a tiny generated world: the perception task follows its
parameter (a subset works, a column the street views lack is an error naming it)."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest

from gair.evaluation.suite import ModelEmbeddings, chance_levels, run_suite
from gair.io.streetscapes import PERCEPTION_ATTRIBUTES
from gair.parameters import EvaluateParams

DIM, N_VIEWS, N_PATCHES = 8, 80, 20


def _frame(rng, n: int, **columns) -> gpd.GeoDataFrame:
    lat, lon = 48 + rng.uniform(0, 0.1, n), 9 + rng.uniform(0, 0.1, n)
    return gpd.GeoDataFrame({"lat": lat, "lon": lon, **columns},
                            geometry=gpd.points_from_xy(lon, lat), crs="EPSG:4326")


def _splits(n: int) -> np.ndarray:
    return np.array(["test", "val", "train", "train", "train"])[np.arange(n) % 5]


def _vectors(rng, n: int) -> list[np.ndarray]:
    return list(rng.normal(size=(n, DIM)).astype(np.float32))


@pytest.fixture
def world():
    rng = np.random.default_rng(0)
    split = _splits(N_VIEWS)
    patch_id = [f"t:r{i % N_PATCHES:04d}c0000" for i in range(N_VIEWS)]
    landcover = rng.integers(0, 3, N_VIEWS)
    # Perception scores the SV embedding predicts (linearly), each its own direction.
    sv = np.stack(_vectors(rng, N_VIEWS))
    scores = {name: 5 + sv[:, k] for k, name in enumerate(PERCEPTION_ATTRIBUTES)}
    street_views = pd.DataFrame({"uuid": [f"v{i}" for i in range(N_VIEWS)], "split": split,
                                 "patch_id": patch_id, "landcover": landcover,
                                 "affluence": rng.normal(size=N_VIEWS), **scores})
    street_views["lat"], street_views["lon"] = 48 + rng.uniform(0, 0.1, (2, N_VIEWS))
    pairs = _frame(rng, N_VIEWS, uuid=street_views["uuid"], sv=list(sv),
                   **{k: _vectors(rng, N_VIEWS)
                      for k in ("rs_query", "rs_global", "rs_centre", "location")})
    patch_split = _splits(N_PATCHES)
    patches = _frame(rng, N_PATCHES, split=patch_split, landcover=rng.integers(0, 3, N_PATCHES),
                     rs_global=_vectors(rng, N_PATCHES), location=_vectors(rng, N_PATCHES))
    points = _frame(rng, 40, split=_splits(40),
                    landcover=rng.integers(0, 3, 40), location=_vectors(rng, 40))
    gallery = _frame(rng, 30, location=_vectors(rng, 30))
    embeddings = ModelEmbeddings(pairs, patches, rng.normal(size=(N_PATCHES, DIM, 3, 3)),
                                 points, gallery)
    masks = rng.integers(0, 3, (N_PATCHES, 6, 6))
    return embeddings, street_views, masks


@pytest.mark.parametrize("perception", [PERCEPTION_ATTRIBUTES, ("Safe", "Boring")])
def test_perception_task_scores_the_configured_columns(world, perception):
    embeddings, street_views, masks = world
    params = EvaluateParams(tasks={"perception": list(perception)})
    results = run_suite(embeddings, street_views, masks, params)
    scored = {k.removeprefix("r2/") for k in results["sv_perception"] if k.startswith("r2/")}
    assert scored == set(perception)
    # Each score is linear in the SV embedding: the probe recovers it.
    assert results["sv_perception"]["r2"] > 0.9
    chance = chance_levels(street_views, embeddings.patches, masks, embeddings.points,
                           embeddings.gallery[["lat", "lon"]].to_numpy(), params)
    assert chance["sv_perception"]["r2"] <= 0.0


def test_perception_column_the_street_views_lack_is_named(world):
    embeddings, street_views, masks = world
    with pytest.raises(KeyError, match="Ugly"):
        run_suite(embeddings, street_views, masks,
                  EvaluateParams(tasks={"perception": ["Safe", "Ugly"]}))


def test_gair_beats_random_counts_margins_beyond_the_seed_spread():
    """Known scores: GAIR wins where its mean is ahead by more than either group's spread
    (lower is better for the geolocalisation error, which is not a downstream task)."""
    from gair.evaluation.report import TASK_BY_NAME, seed_comparison
    from gair.evaluation.suite import DOWNSTREAM

    scores = {  # task: (gair seeds, random seeds)
        "sv_landcover": ((0.60, 0.62), (0.40, 0.41)),     # wins by 0.205 > 0.02
        "sv_perception": ((0.30, 0.50), (0.28, 0.29)),    # margin 0.115 < spread 0.20
        "rs_landcover": ((0.50, 0.50), (0.55, 0.55)),     # behind
        "rs_segmentation": ((0.31, 0.31), (0.30, 0.30)),  # wins by 0.01 > 0
    }
    rows = [{"task": task, "model": f"{group}_s{seed}", "metric": TASK_BY_NAME[task].headline,
             "value": value}
            for task, groups in scores.items()
            for group, values in zip(("gair", "random"), groups, strict=True)
            for seed, value in enumerate(values)]
    comparison = seed_comparison(pd.DataFrame(rows), ["gair_s0", "gair_s1"],
                                 ["random_s0", "random_s1"])
    assert set(comparison["task"]) <= set(DOWNSTREAM)
    assert dict(zip(comparison["task"], comparison["gair_wins"], strict=True)) == {
        "sv_landcover": True, "sv_perception": False, "rs_landcover": False,
        "rs_segmentation": True}
