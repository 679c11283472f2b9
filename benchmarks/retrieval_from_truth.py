"""How well the sample world's street views can be retrieved at all; prints one JSON line.

Cross-view retrieval can only be as good as what a street view shows of its place. This
scores the test split of ``data/05_model_input/pairs.parquet`` with a matcher that reads
the hidden truth instead of pixels: the query is the land-cover class the camera sees in
each direction (``sectors`` of the truth table) and, read off the picture with a Gaussian
error of ``sigma``, the affluence and urbanity at the camera; a gallery point is the truth
around it (the non-road classes 20-80 m away, as the generator draws the sectors, and the
two fields). The score is the log-likelihood of the query under the point. It is a
reference for what the pictures allow, not a bound: a better matcher could do better.

Usage: .venv/bin/python benchmarks/retrieval_from_truth.py [data_dir]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from gair.evaluation.retrieval import ranking_metrics
from gair.evaluation.sample_world_tasks import LANDCOVER, read_truth
from gair.sample_world.landscape import LandCover

SIGMAS = (0.05, 0.1, 0.2)  # reading error of affluence and urbanity (fields in [0, 1])
RING_PX = (2, 8)  # the sectors' 20-80 m at 10 m pixels
FLOOR = 0.02  # a class absent from the ring is unlikely, not impossible


def ring_histograms(landcover: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Share of each class among the non-road pixels 20-80 m from each (row, col)."""
    dr, dc = np.mgrid[-RING_PX[1] : RING_PX[1] + 1, -RING_PX[1] : RING_PX[1] + 1]
    distance = np.hypot(dr, dc)
    ring = (distance >= RING_PX[0]) & (distance <= RING_PX[1])
    dr, dc = dr[ring], dc[ring]
    histograms = np.zeros((len(rows), max(LandCover) + 1))
    for i, (row, col) in enumerate(zip(rows, cols, strict=True)):
        r, c = row + dr, col + dc
        inside = (r >= 0) & (r < landcover.shape[0]) & (c >= 0) & (c < landcover.shape[1])
        classes = landcover[r[inside], c[inside]]
        counts = np.bincount(classes[classes != LandCover.ROAD], minlength=histograms.shape[1])
        histograms[i] = counts / max(counts.sum(), 1)
    return histograms


def main(data_dir: Path) -> dict[str, object]:
    truth_dir = data_dir / "01_raw" / "sample" / "truth"
    pairs = pd.read_parquet(data_dir / "05_model_input" / "pairs.parquet",
                            columns=["uuid", "split", "tile_id", "row", "col", "patch_id"])
    truth = pd.read_csv(truth_dir / "street_views.csv",
                        usecols=["uuid", "sectors", "affluence", "urbanity"])
    test = pairs[pairs["split"] == "test"].merge(truth, on="uuid", validate="one_to_one")
    test = test.sort_values("uuid").reset_index(drop=True)
    histograms = np.zeros((len(test), max(LandCover) + 1))
    for tile_id, rows in test.groupby("tile_id"):
        landcover = read_truth(truth_dir, LANDCOVER, tile_id)
        histograms[rows.index] = ring_histograms(landcover, rows["row"].to_numpy(int),
                                                 rows["col"].to_numpy(int))
    log_p = np.log(histograms + FLOOR)
    # Each query's sectors as class counts: sum over sectors of log p(class) = counts @ log_p.T
    sector_counts = np.zeros_like(histograms)
    for i, sectors in enumerate(test["sectors"]):
        np.add.at(sector_counts[i], [int(c) for c in sectors.split("-")], 1)
    land = sector_counts @ log_p.T
    fields = test[["affluence", "urbanity"]].to_numpy()
    groups = test["patch_id"].to_numpy()

    def scored(score: np.ndarray) -> dict[str, float]:
        metrics = ranking_metrics(torch.from_numpy(score), groups)
        return {k: round(metrics[k], 3) for k in ("r@1", "r@10", "median_rank", "patch_r@1")}

    result: dict[str, object] = {"views": len(test), "patches": int(test["patch_id"].nunique()),
                                 "chance_r@1": round(1 / len(test), 4),
                                 "land_cover_only": scored(land)}
    rng = np.random.default_rng(0)
    for sigma in SIGMAS:
        read = fields + rng.normal(0.0, sigma, fields.shape)
        distance2 = ((read[:, None, :] - fields[None, :, :]) ** 2).sum(-1)
        result[f"with_fields_sigma_{sigma}"] = scored(land - distance2 / (2 * sigma**2))
    return result


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1] if len(sys.argv) > 1 else "data"))))
