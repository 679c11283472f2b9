"""The position-free controls for NILI: their inputs, margins and the within-patch truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gair.evaluation.report import nili_margins, nili_table
from gair.evaluation.sample_world_tasks import within_patch_variation
from gair.evaluation.suite import _patch_chance, _patch_level


def test_within_patch_variation_by_hand():
    targets = pd.DataFrame({
        "uuid": list("abcdefg"),
        "patch_id": ["p1", "p1", "p2", "p2", "p2", "p3", "p4"],
        "landcover": [1, 2, 3, 3, 3, 4, 5],
        "affluence": [0.0, 1.0, 0.5, 0.5, 0.5, 9.0, 9.0],
    })
    # Patches with two views or more: p1 (classes 1, 2: mixed) and p2 (one class).
    # Affluence of their views: 0, 1, .5, .5, .5 (mean .5): total SS 0.5, within p1 0.5.
    out = within_patch_variation(targets)
    assert out == {"patches_with_2_views": 2.0, "mixed_landcover_share": 0.5,
                   "affluence_variance_within": pytest.approx(1.0)}
    targets.loc[[2, 3, 4], "affluence"] = [2.0, 2.0, 2.0]
    # Now views 0, 1, 2, 2, 2 (mean 1.4): total SS 1.96 + .16 + 3 * .36 = 3.2; within 0.5.
    assert within_patch_variation(targets)["affluence_variance_within"] == pytest.approx(0.5 / 3.2)


def test_patch_level_metrics_and_their_chance():
    metrics = {"r@1": 0.1, "median_rank": 3.0, "patch_r@1": 0.4, "patch_median_rank": 1.0,
               "chance_r@1": 0.01, "chance_patch_r@1": 0.05}
    assert _patch_level(metrics) == {"patch_r@1": 0.4, "patch_median_rank": 1.0,
                                     "chance_patch_r@1": 0.05}
    test = pd.DataFrame({"patch_id": ["a", "a", "a", "b"]})
    # Views of patch a see 3 of 4 items as their patch, the view of b 1 of 4.
    assert _patch_chance(test) == pytest.approx((3 * 3 / 4 + 1 / 4) / 4)


def _results(values: dict[tuple[str, str], float]) -> pd.DataFrame:
    metric = {"fused_affluence": "r2", "fused_affluence_centre": "r2",
              "fused_affluence_global": "r2", "retrieval_nili_patch": "patch_r@1",
              "retrieval_centre": "patch_r@1"}
    return pd.DataFrame([{"task": t, "model": m, "metric": metric[t], "value": v}
                         for (t, m), v in values.items()])


def test_nili_margins_per_seed_and_sign():
    values = {}
    for model, nili, centre, glob, r_nili, r_centre in (
            ("gair_s0", 0.40, 0.35, 0.30, 0.10, 0.12),
            ("gair_s1", 0.42, 0.38, 0.44, 0.11, 0.09),
            ("random_s0", 0.0, 0.0, 0.01, 0.03, 0.03)):
        values |= {("fused_affluence", model): nili, ("fused_affluence_centre", model): centre,
                   ("fused_affluence_global", model): glob,
                   ("retrieval_nili_patch", model): r_nili, ("retrieval_centre", model): r_centre}
    margins = nili_margins(_results(values), {"GAIR": ["gair_s0", "gair_s1"],
                                              "random": ["random_s0", "absent"]})
    gair = margins[margins["group"] == "GAIR"].set_index("control")
    assert gair.loc["fused_affluence_centre", "margins"] == pytest.approx([0.05, 0.04])
    assert gair.loc["fused_affluence_centre", "ahead_every_seed"]
    assert gair.loc["fused_affluence_global", "mean"] == pytest.approx((0.10 - 0.02) / 2)
    assert not gair.loc["fused_affluence_global", "ahead_every_seed"]
    assert gair.loc["retrieval_centre", "margins"] == pytest.approx([-0.02, 0.02])
    random = margins[margins["group"] == "random"].set_index("control")
    assert random.loc["retrieval_centre", "margins"] == pytest.approx([0.0])
    assert not random.loc["retrieval_centre", "ahead_every_seed"], "a tie is not ahead"
    table = nili_table(margins)
    assert "+0.050, +0.040" in table and "| GAIR |" in table
    assert np.isfinite(margins["mean"]).all()


def test_patch_chance_of_an_empty_test_split_is_an_empty_split_error():
    empty = pd.DataFrame({"patch_id": pd.Series([], dtype="str")})
    with pytest.raises(ValueError, match="no test street views"):
        _patch_chance(empty)
