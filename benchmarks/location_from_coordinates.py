"""How much land cover a location alone tells on the sample world; prints one JSON line.

The ``loc_landcover`` task asks for the land cover at points in spatial blocks no training
point is in. This scores the same points (``data/04_feature/eval_points.parquet``) without
any embedding: k-nearest neighbours on the coordinates themselves (metres, k chosen on
val), with every train label and with 10 labels per class (the evaluation's regime, mean
over 5 draws), next to the train majority class. A learned location embedding can only
interpolate the same way, so this is the reference the task's numbers should be read
against.

Usage: .venv/bin/python benchmarks/location_from_coordinates.py [data_dir]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
from sklearn.neighbors import KNeighborsClassifier

from gair.evaluation.probes import K_GRID, Labelled, few_labels
from gair.evaluation.suite import SPLITS

EARTH_RADIUS_M = 6_371_000.0
LABELS_PER_CLASS, DRAWS = 10, 5


def _metres(points: gpd.GeoDataFrame) -> np.ndarray:
    """Equirectangular (x, y) in metres around each point's own latitude: exact enough
    within a site, and sites are thousands of km apart."""
    lat, lon = np.radians(points["lat"].to_numpy()), np.radians(points["lon"].to_numpy())
    return np.column_stack([lon * np.cos(lat), lat]) * EARTH_RADIUS_M


def _knn_accuracy(splits: dict[str, Labelled]) -> tuple[float, int]:
    best = None
    for k in sorted({min(k, len(splits["train"].y)) for k in K_GRID}):
        model = KNeighborsClassifier(n_neighbors=k).fit(*splits["train"])
        val = float((model.predict(splits["val"].x) == splits["val"].y).mean())
        if best is None or val > best[0]:
            best = (val, k, model)
    _, k, model = best
    return float((model.predict(splits["test"].x) == splits["test"].y).mean()), k


def main(data_dir: Path) -> dict[str, float]:
    start = time.perf_counter()
    points = gpd.read_parquet(data_dir / "04_feature" / "eval_points.parquet")
    xy, labels, split = _metres(points), points["landcover"].to_numpy(), points["split"].to_numpy()
    splits = {name: Labelled(xy[split == name], labels[split == name]) for name in SPLITS}
    train, test = splits["train"], splits["test"]
    all_labels, k = _knn_accuracy(splits)
    few = []
    for draw in range(DRAWS):
        keep = few_labels(train.y, LABELS_PER_CLASS, seed=draw)
        few.append(_knn_accuracy(splits | {"train": Labelled(train.x[keep], train.y[keep])})[0])
    return {"points": len(points), "test_points": len(test.y),
            "majority_acc": round(float((test.y == np.bincount(train.y).argmax()).mean()), 3),
            "knn_all_labels_acc": round(all_labels, 3), "knn_all_labels_k": k,
            f"knn_{LABELS_PER_CLASS}_per_class_acc": round(float(np.mean(few)), 3),
            "seconds": round(time.perf_counter() - start, 1)}


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("data"))))
