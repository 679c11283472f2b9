"""Drift or change: reproduced metrics against the committed ones (gair.reporting.reproduction)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gair.reporting.reproduction import classify, tolerance_for
from tests.conftest import PROJECT_ROOT


def _diff(**metrics) -> dict:
    return {"data/08_reporting/metrics.json": {
        key: {"old": old, "new": new} for key, (old, new) in metrics.items()}}


def test_cross_machine_figures_are_drift_and_real_changes_are_not():
    rows = classify(_diff(**{
        # What a fresh clone on another 2-core machine reproduced (issue 19).
        "pretrain/val/loss": (11.805321, 11.805731),
        "eval/rs_landcover/gair_s0/acc": (0.648, 0.646),
        # A real change of method or data.
        "eval/sv_landcover/gair_s0/acc": (0.61, 0.55),
        "eval/rs_landcover/gair_s0/n_test": (93, 94),
        "eval/summary/gair_beats_random": (4, 3),
        "eval/geolocalisation/gair_s0/median_km": (1.2, 1.5),
        "eval/new_task/gair_s0/acc": (None, 0.5),
    }))
    verdicts = {r["metric"]: r["verdict"] for r in rows}
    assert verdicts == {
        "pretrain/val/loss": "drift", "eval/rs_landcover/gair_s0/acc": "drift",
        "eval/sv_landcover/gair_s0/acc": "change", "eval/rs_landcover/gair_s0/n_test": "change",
        "eval/summary/gair_beats_random": "change",
        "eval/geolocalisation/gair_s0/median_km": "change", "eval/new_task/gair_s0/acc": "added"}


def test_every_committed_metric_has_a_tolerance():
    for name in ("metrics.json", "pretrain_metrics.json"):
        for key in json.loads((PROJECT_ROOT / "data/08_reporting" / name).read_text()):
            assert tolerance_for(key) is not None


@pytest.mark.slow
def test_the_check_on_a_clone_whose_metrics_moved(tmp_path):
    """Against the committed metrics, through `dvc metrics diff`: nothing moved agrees; a
    drift agrees; a change is named and exits 1."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(PROJECT_ROOT), str(clone)], check=True)
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}

    def check() -> tuple[int, str]:
        done = subprocess.run([sys.executable, "-m", "gair.reporting.reproduction"], cwd=clone,
                              capture_output=True, text=True, env=env, check=False)
        return done.returncode, done.stdout

    assert check()[0] == 0
    path = clone / "data/08_reporting/pretrain_metrics.json"
    metrics = json.loads(path.read_text())
    metrics["pretrain/val/loss"] *= 1.0005
    path.write_text(json.dumps(metrics))
    code, out = check()
    assert code == 0 and json.loads(out.splitlines()[-1])["drift"] == 1
    metrics["pretrain/val/r@1"] += 0.05
    path.write_text(json.dumps(metrics))
    code, out = check()
    assert code == 1 and "change  data/08_reporting/pretrain_metrics.json  pretrain/val/r@1" in out
