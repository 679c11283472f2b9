import numpy as np
import pytest
import torch

from gair.evaluation.retrieval import geolocalise, ranking_metrics, retrieval_metrics
from gair.geo.distance import haversine_km


def test_retrieval_metrics_by_hand():
    q = torch.eye(3)
    g = torch.tensor([[1.0, 0, 0], [0, 0, 1.0], [0, 1.0, 0]])
    m = retrieval_metrics(q, g)
    assert m["r@1"] == pytest.approx(1 / 3) and m["r@5"] == 1.0
    assert m["chance_r@1"] == pytest.approx(1 / 3) and m["median_rank"] == 3.0  # ties count against


def test_patch_level_retrieval_finds_the_group_when_the_item_is_missed():
    # Queries 0 and 1 are in patch "a", 2 and 3 in patch "b"; each query matches the
    # other item of its own patch best, so item-level R@1 is 0 and patch-level R@1 is 1.
    g = torch.eye(4)
    q = g[[1, 0, 3, 2]] + 0.1 * g
    m = retrieval_metrics(q, g, groups=np.array(["a", "a", "b", "b"]))
    assert m["r@1"] == 0.0 and m["median_rank"] == 2.0
    assert m["patch_r@1"] == 1.0 and m["patch_median_rank"] == 1.0
    assert m["chance_patch_r@1"] == pytest.approx(0.5)
    # A query closer to another patch than to any item of its own: patch rank 2.
    q2 = torch.stack([g[2] + 0.5 * g[0], g[1], g[3], g[2]])
    m2 = retrieval_metrics(q2, g, groups=np.array(["a", "a", "b", "b"]))
    assert m2["patch_r@1"] == pytest.approx(3 / 4) and m2["patch_r@5"] == 1.0


def test_ranking_metrics_from_scores_any_scale():
    # Log-likelihoods, not cosines: query i's own item ranks 1, 2, 3 and 4 in turn.
    scores = torch.tensor([[-1.0, -5, -5, -5], [-2, -3, -9, -9], [-1, -1, -4, -9], [0, 0, 0, -7]],
                          dtype=torch.float64)
    m = ranking_metrics(scores)
    assert m["r@1"] == 0.25 and m["chance_r@1"] == 0.25
    assert m["median_rank"] == 2.5  # the mean of the two middle ranks, not the lower one


def test_a_query_with_nan_scores_ranks_last():
    scores = torch.eye(4)
    scores[1, 2] = torch.nan
    m = ranking_metrics(scores, groups=np.array(["a", "a", "b", "b"]))
    assert m["r@1"] == 0.75 and m["patch_r@1"] == 0.75  # without the guard: 1.0


def test_constant_embeddings_retrieve_nothing():
    m = retrieval_metrics(torch.ones(5, 4), torch.ones(5, 4))
    assert m["r@1"] == 0.0 and m["median_rank"] == 5.0


def test_haversine_known_distances():
    # One degree of latitude ~ 111.2 km; Paris -> London ~ 343.5 km.
    assert haversine_km(0, 0, 1, 0) == pytest.approx(111.19, abs=0.01)
    assert haversine_km(48.8566, 2.3522, 51.5074, -0.1278) == pytest.approx(343.5, abs=0.5)


def test_geolocalisation_with_identical_embeddings_is_exact():
    gallery_latlon = np.array([[48.0, 9.0], [1.3, 103.8], [-23.5, -46.6]])
    gallery = np.eye(3, dtype=np.float32)
    queries = gallery[[2, 0]]
    metrics, predicted, errors = geolocalise(queries, gallery, gallery_latlon,
                                             gallery_latlon[[2, 0]] + [[0.0, 0.0], [0.009, 0]])
    np.testing.assert_array_equal(predicted, gallery_latlon[[2, 0]])
    assert errors[0] == 0.0 and errors[1] == pytest.approx(1.0, abs=0.01)
    assert metrics["acc@1km"] == 0.5 and metrics["acc@25km"] == 1.0


def test_retrieval_in_chunks_equals_the_whole_matrix():
    """Validation ranks queries in chunks (never the [N, N] matrix): the same metrics."""
    generator = torch.Generator().manual_seed(0)
    queries, gallery = torch.randn(37, 6, generator=generator), torch.randn(37, 6, generator=generator)
    gallery[10] = gallery[11]  # a tie
    groups = np.array([i // 3 for i in range(37)])
    whole = ranking_metrics(queries @ gallery.T, groups)
    for chunk in (1, 5, 37, 100):
        assert retrieval_metrics(queries, gallery, groups, chunk=chunk) == whole
