"""`kedro viz build` makes a static site that, served over HTTP, shows every pipeline."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT, free_port

BIN = Path(sys.executable).parent
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=1400,900",
                  "--virtual-time-budget=10000"]



@pytest.mark.slow
def test_viz_site_shows_the_pipelines_in_headless_chromium(tmp_path):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    if not (PROJECT_ROOT / ".git").exists():
        pytest.skip("needs the project's git repository")
    project = tmp_path / "gair"
    subprocess.run(["git", "clone", "-q", str(PROJECT_ROOT), str(project)], check=True)
    env = os.environ | {"KEDRO_DISABLE_TELEMETRY": "1"}
    subprocess.run([str(BIN / "kedro"), "viz", "build"], cwd=project, env=env, check=True,
                   capture_output=True)
    build = project / "build"
    assert {p.name for p in (build / "api" / "pipelines").iterdir()} >= {
        "__default__", "sample_world", "ingest", "pair", "pretrain", "evaluate", "embed", "sweep"}
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind",
                               "127.0.0.1", "-d", str(build)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with tempfile.TemporaryDirectory() as profile:
            dom = subprocess.run(
                [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom",
                 f"http://127.0.0.1:{port}/"],
                capture_output=True, text=True, timeout=120, check=True).stdout
    finally:
        server.terminate()
        server.wait()
    for node in ("build_sample_world_node", "ingest_street_views_node", "plan_pairs_node",
                 "extract_training_shards_node", "pretrain_gair_node", "score_models_node",
                 "report_results_node"):
        assert node in dom, f"{node} is not on the rendered page"
