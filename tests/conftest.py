"""Shared fixtures: the project root, the real-data samples, and a small sample world."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import pytest

# Keep every tool offline and quiet, whatever the caller's environment.
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# Runs log to a temporary store (temporary_conf, tests/training), never a caller's server.
os.environ.pop("MLFLOW_TRACKING_URI", None)

from gair.io.directories import replace_directory
from gair.sample_world import (
    SampleWorldConfig,
    build_world,
    write_sentinel2,
    write_streetscapes,
    write_truth,
)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
REALDATA = PROJECT_ROOT.parent / "shared" / "realdata"


def small_world_config(**overrides) -> SampleWorldConfig:
    """Three sites in three UTM zones (one southern), tiny tiles and images."""
    values = {
        "seed": 7,
        "sites": [
            {"name": "stuttgart", "lat": 48.775, "lon": 9.18, "utc_offset": "+02:00",
             "nodata_border": True, "urbanity": 0.55},
            {"name": "singapore", "lat": 1.352, "lon": 103.82, "utc_offset": "+08:00",
             "urbanity": 0.7},
            {"name": "sao_paulo", "lat": -23.55, "lon": -46.63, "utc_offset": "-03:00",
             "nodata_border": True, "urbanity": 0.6},
        ],
        "tiles_per_site": 1,
        "tile_size_px": 128,
        "street_views_per_tile": 12,
        "street_views_outside": 2,
        "image_width": 64,
        "image_height": 48,
        "images_per_folder": 10,
    }
    return SampleWorldConfig(**(values | overrides))


def write_world(config: SampleWorldConfig, root: Path) -> dict[str, Path]:
    """Generate a sample world under ``root`` as the pipeline's nodes and datasets do."""
    world = build_world(config)
    dirs = {"sentinel2": root / "sentinel2", "streetscapes": root / "streetscapes",
            "truth": root / "truth"}
    for name, write in (("sentinel2", write_sentinel2), ("streetscapes", write_streetscapes),
                        ("truth", write_truth)):
        replace_directory(dirs[name], partial(write, world))
    return dirs


def write_eurosat(root: Path, classes: tuple[str, ...] = ("Forest", "River"), per_class: int = 3,
                  size: int = 8, bands: int = 13) -> Path:
    """A tiny EuroSAT-MS tree (``<root>/<Class>/<Class>_<n>.tif``): band b of class k has
    mean 1000 + 100 b + 500 k plus noise, so the classes are told apart by brightness."""
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    rng = np.random.default_rng(0)
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for n in range(per_class):
            mean = 1000 + 100 * np.arange(bands)[:, None, None] + 500 * k
            data = (mean + rng.normal(0, 20, (bands, size, size))).astype(np.uint16)
            with rasterio.open(root / name / f"{name}_{n + 1}.tif", "w", driver="GTiff",
                               width=size, height=size, count=bands, dtype="uint16",
                               crs="EPSG:32632",
                               transform=from_origin(500000, 5400000, 10, 10)) as dst:
                dst.write(data)
    return root


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def temporary_conf(root: Path, parameters: dict[str, dict] | None = None) -> Path:
    """A copy of the project's conf/ under ``root`` whose data folder is ``root / "data"``.

    ``parameters`` maps a parameters file stem (e.g. ``parameters_pair``) to its new content.
    """
    import shutil

    import yaml

    conf = root / "conf"
    shutil.copytree(PROJECT_ROOT / "conf", conf, ignore=shutil.ignore_patterns("local"))
    (conf / "local").mkdir()
    globals_ = yaml.safe_load((conf / "base" / "globals.yml").read_text())
    globals_["data_dir"] = str(root / "data")
    globals_["sweep_best_parameters_file"] = str(conf / "sweep" / "parameters_pretrain.yml")
    (conf / "base" / "globals.yml").write_text(yaml.safe_dump(globals_))
    shared = yaml.safe_load((conf / "base" / "parameters.yml").read_text())
    shared["tracking"]["local_dir"] = str(root / "mlruns")  # not the project's mlruns/
    (conf / "base" / "parameters.yml").write_text(yaml.safe_dump(shared))
    for stem, content in (parameters or {}).items():
        (conf / "base" / f"{stem}.yml").write_text(yaml.safe_dump(content))
    return conf


@pytest.fixture(scope="session")
def small_world(tmp_path_factory) -> dict[str, Path]:
    """A small generated sample world, shared by the tests that only read it."""
    return write_world(small_world_config(), tmp_path_factory.mktemp("world"))


@pytest.fixture
def realdata() -> Path:
    if not REALDATA.is_dir():
        pytest.skip(f"real sample data not found at {REALDATA} (only present beside CI clones)")
    return REALDATA
