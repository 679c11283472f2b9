"""`kedro viz build` makes a static site that, served over HTTP, shows every pipeline."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from tests.conftest import PROJECT_ROOT, free_port, temporary_conf

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


@pytest.mark.slow
def test_viz_site_shows_no_database_password(tmp_path):
    """The sweep's database URL where docs/sweeps.md puts it (credentials.yml, or an environment
    variable) stays out of the site, even with hooks run and datasets previewed."""
    secret, env_secret = "hunter2-Xq9", "tiger-Zk7"
    project = tmp_path / "gair"
    conf = temporary_conf(project)  # the working tree's conf/, uncommitted changes included
    shutil.copy(PROJECT_ROOT / "pyproject.toml", project)
    (project / "src").mkdir()  # Kedro wants one; gair is imported from the working tree
    (conf / "local" / "credentials.yml").write_text(yaml.safe_dump(
        {"sweep_storage": {"url": f"postgresql+psycopg2://gair:{secret}@db-host:5432/gair"}}))
    (conf / "local" / "parameters_sweep.yml").write_text(yaml.safe_dump(
        {"sweep": {"storage": "credentials:sweep_storage"}}))
    env = os.environ | {"KEDRO_DISABLE_TELEMETRY": "1",
                        "GAIR_OPTUNA_STORAGE": f"postgresql://gair:{env_secret}@db-host/gair"}
    result = subprocess.run([str(BIN / "kedro"), "viz", "build", "--include-hooks",
                             "--include-previews"], cwd=project, env=env, capture_output=True,
                            text=True, check=False)
    build = project / "build"
    assert result.returncode == 0 and (build / "api" / "pipelines" / "sweep").is_file(), (
        result.stdout[-3000:] + result.stderr[-3000:])
    site = "".join(p.read_text(errors="replace") for p in build.rglob("*") if p.is_file())
    assert "credentials:sweep_storage" in site, "the site shows where the URL is"
    shown = [site, result.stdout, result.stderr]
    shown += [p.read_text(errors="replace") for p in project.rglob("*")  # .viz/, info.log
              if p.is_file() and not p.is_relative_to(build)
              and p != conf / "local" / "credentials.yml"]
    assert not [text for text in shown if secret in text or env_secret in text]
