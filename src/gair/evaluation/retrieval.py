"""Cross-view retrieval and geolocalisation by retrieval from a location gallery."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from gair.geo.distance import GEOLOCALISATION_RADII_KM, haversine_km

RANKING_CHUNK = 4096
"""Query rows scored at a time by :func:`retrieval_metrics`: the whole score matrix of
50,000 queries would take 10 GB."""


def retrieval_metrics(queries: torch.Tensor, gallery: torch.Tensor,
                      groups: np.ndarray | None = None, chunk: int = RANKING_CHUNK,
                      ) -> dict[str, float]:
    """Recall@k and median rank of item i of ``gallery`` for query i (cosine similarity).

    Ties count against the query (a constant embedding ranks last, never first). With
    ``groups`` (one id per item, e.g. the RS patch a view is in), also the same metrics
    one scale coarser, ``patch_*``: the rank of the best item of the query's own group
    among the items of other groups (+1), and its chance ``chance_patch_r@1`` (the mean
    group size over the gallery size). Scored ``chunk`` queries at a time.
    """
    queries, gallery = queries.float(), gallery.float()
    codes = _group_codes(groups)
    blocks = [_block_ranks(queries[start:start + chunk] @ gallery.T, start, codes)
              for start in range(0, len(queries), chunk)]
    return _metrics(blocks, len(gallery), codes)


def ranking_metrics(similarity: torch.Tensor, groups: np.ndarray | None = None) -> dict[str, float]:
    """:func:`retrieval_metrics` from a [N, N] score matrix (higher is more similar)."""
    codes = _group_codes(groups)
    return _metrics([_block_ranks(similarity, 0, codes)], similarity.shape[1], codes)


def _group_codes(groups: np.ndarray | None) -> torch.Tensor | None:
    if groups is None:
        return None
    return torch.from_numpy(np.unique(np.asarray(groups), return_inverse=True)[1])


def _block_ranks(similarity: torch.Tensor, start: int, codes: torch.Tensor | None,
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Ranks (and group ranks) of the queries ``start ..`` whose scores are the rows of
    ``similarity``; their own items are the gallery's items ``start ..``."""
    rows = torch.arange(len(similarity))
    true = similarity[rows, start + rows][:, None]
    # A query whose scores are not all finite (a diverged model) ranks last, not first:
    # comparisons with NaN are false, which would otherwise make it rank 0.
    finite = torch.isfinite(similarity).all(dim=1)
    last = similarity.shape[1]
    ranks = torch.where(finite, (similarity >= true).sum(dim=1), last)
    if codes is None:
        return ranks, None
    same = codes[start:start + len(similarity), None] == codes[None, :]
    best_own = similarity.masked_fill(~same, -torch.inf).max(dim=1, keepdim=True).values
    others = ((similarity >= best_own) & ~same).sum(dim=1)
    return ranks, torch.where(finite, others + 1, last)


def _metrics(blocks: list[tuple[torch.Tensor, torch.Tensor | None]], gallery_size: int,
             codes: torch.Tensor | None) -> dict[str, float]:
    metrics = _recalls(torch.cat([ranks for ranks, _ in blocks]), "")
    metrics["chance_r@1"] = 1.0 / gallery_size
    if codes is not None:
        metrics |= _recalls(torch.cat([patch for _, patch in blocks]), "patch_")
        group_sizes = torch.bincount(codes)[codes]
        metrics["chance_patch_r@1"] = float(group_sizes.float().mean()) / gallery_size
    return metrics


def _recalls(ranks: torch.Tensor, prefix: str) -> dict[str, float]:
    metrics = {f"{prefix}r@{k}": float((ranks <= k).float().mean()) for k in (1, 5, 10)}
    # numpy's median averages the two middle ranks of an even count; torch's takes the lower.
    return metrics | {f"{prefix}median_rank": float(np.median(ranks.numpy()))}


def geolocalise(queries: np.ndarray, gallery: np.ndarray, gallery_latlon: np.ndarray,
                true_latlon: np.ndarray, radii_km: Sequence[float] = GEOLOCALISATION_RADII_KM,
                ) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """Predict each query's (lat, lon) as its most similar gallery location.

    ``queries`` [N, D] and ``gallery`` [M, D] are L2-normalised embeddings (e.g. street
    views and location embeddings of gallery points), ``gallery_latlon`` [M, 2] and
    ``true_latlon`` [N, 2] are (lat, lon) in degrees. Returns the metrics (median and
    mean error in km, accuracy within each radius), the predictions and the errors.
    """
    best = (torch.from_numpy(np.asarray(queries, np.float32))
            @ torch.from_numpy(np.asarray(gallery, np.float32)).T).argmax(dim=1).numpy()
    predicted = np.asarray(gallery_latlon)[best]
    errors = haversine_km(true_latlon[:, 0], true_latlon[:, 1], predicted[:, 0], predicted[:, 1])
    metrics = {"median_km": float(np.median(errors)), "mean_km": float(errors.mean())}
    metrics |= {f"acc@{r:g}km": float((errors <= r).mean()) for r in radii_km}
    return metrics, predicted, errors
