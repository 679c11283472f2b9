"""Catalog files are saved whole: a reader never sees part of one, a failed save keeps the
old one, and no staging file stays behind."""

from __future__ import annotations

import json
import threading

import geopandas as gpd
import pandas as pd
import pytest
from kedro.config import OmegaConfigLoader
from kedro.framework.project import configure_project, pipelines
from kedro.framework.startup import bootstrap_project
from kedro.io import DataCatalog, Version
from kedro.io.core import DatasetError

from gair.datasets.atomic import (
    AtomicSaveMixin,
    CSVDataset,
    GenericDataset,
    JSONDataset,
    ParquetDataset,
    TextDataset,
    YAMLDataset,
)
from tests.conftest import PROJECT_ROOT


class _Unwritable:
    """A value every writer fails on, after it has opened its file."""

    def __str__(self) -> str:
        raise ValueError("cannot write this value")

    __repr__ = __str__

    def __reduce_ex__(self, protocol):
        raise ValueError("cannot write this value")


def _frame(rows: int = 3) -> pd.DataFrame:
    return pd.DataFrame({"a": range(rows), "b": [f"row {i}" for i in range(rows)]})


def _geo_frame() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(_frame(), geometry=gpd.points_from_xy([0, 1, 2], [0, 1, 2]),
                            crs="EPSG:4326")


# (dataset, good data, data whose save fails midway)
CASES = {
    "csv": (lambda p: CSVDataset(filepath=str(p / "t.csv")), _frame(),
            pd.DataFrame({"a": [1, _Unwritable()]})),
    "parquet": (lambda p: ParquetDataset(filepath=str(p / "t.parquet")), _frame(),
                pd.DataFrame({"a": [1, _Unwritable()]})),
    "json": (lambda p: JSONDataset(filepath=str(p / "t.json")), {"a": [1, 2]},
             {"a": [1, _Unwritable()]}),
    "yaml": (lambda p: YAMLDataset(filepath=str(p / "t.yml")), {"a": [1, 2]},
             {"a": [1, _Unwritable()]}),
    "text": (lambda p: TextDataset(filepath=str(p / "t.md")), "# table\n", _Unwritable()),
    "geoparquet": (lambda p: GenericDataset(filepath=str(p / "t.parquet"), file_format="parquet"),
                   _geo_frame(), gpd.GeoDataFrame({"a": [1, _Unwritable()]},
                                                  geometry=gpd.points_from_xy([0, 1], [0, 1]))),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_failed_save_keeps_the_old_file_and_leaves_no_staging_file(tmp_path, case):
    make, good, bad = CASES[case]
    dataset = make(tmp_path)
    dataset.save(good)
    (path,) = tmp_path.iterdir()
    before = path.read_bytes()
    with pytest.raises(DatasetError, match=r"cannot write this value|not JSON serializable|_Unwritable"):
        dataset.save(bad)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    assert path.read_bytes() == before
    loaded = dataset.load()
    if isinstance(good, pd.DataFrame):
        pd.testing.assert_frame_equal(pd.DataFrame(loaded), pd.DataFrame(good))
    else:
        assert loaded == good


def test_a_reader_during_a_save_sees_the_old_file(tmp_path):
    path = tmp_path / "report.json"
    dataset = JSONDataset(filepath=str(path), save_args={"default": lambda value: seen.append(
        path.read_text()) or value.name})
    seen: list[str] = []
    dataset.save({"version": 1})
    old = path.read_text()

    class Later:  # json.dump asks `default` for it halfway through writing the file
        name = "later"

    dataset.save({"version": 2, "first": list(range(1000)), "then": Later()})
    assert seen == [old]
    assert json.loads(path.read_text())["then"] == "later"


def test_concurrent_readers_see_only_whole_files(tmp_path):
    path = tmp_path / "table.csv"
    dataset = CSVDataset(filepath=str(path), save_args={"index": False})
    rows = 20_000
    dataset.save(_frame(rows))
    saves_done = threading.Event()
    seen: list[int] = []

    def read_until_saved() -> None:
        while not saves_done.is_set():
            seen.append(len(pd.read_csv(path)))

    reader = threading.Thread(target=read_until_saved)
    reader.start()
    try:
        for _ in range(15):
            dataset.save(_frame(rows))
    finally:
        saves_done.set()
        reader.join()
    assert seen and set(seen) == {rows}
    assert [p.name for p in tmp_path.iterdir()] == ["table.csv"]


def test_versioned_saves_keep_kedro_versions(tmp_path, recwarn):
    dataset = CSVDataset(filepath=str(tmp_path / "t.csv"), version=Version(None, None),
                         save_args={"index": False})
    dataset.save(_frame(2))
    dataset.save(_frame(3))
    assert len(dataset.load()) == 3
    versions = sorted((tmp_path / "t.csv").iterdir())
    assert len(versions) == 2
    assert all([p.name for p in v.iterdir()] == ["t.csv"] for v in versions)
    assert not [w for w in recwarn if "version" in str(w.message).lower()]
    pinned = CSVDataset(filepath=str(tmp_path / "t.csv"),
                        version=Version(None, versions[0].name))
    with pytest.raises(DatasetError, match="must not exist"):
        pinned.save(_frame(1))


def test_every_file_the_catalog_saves_is_saved_atomically():
    loader = OmegaConfigLoader(conf_source=str(PROJECT_ROOT / "conf"), base_env="base",
                               default_run_env="local")
    catalog = DataCatalog.from_config(loader["catalog"])
    bootstrap_project(PROJECT_ROOT)
    configure_project("gair")
    # Entries, and the names of the pipelines' datasets that a factory pattern matches.
    names = {*catalog.keys(), *(name for pipeline in pipelines.values()
                                for name in pipeline.datasets() if name in catalog)}
    in_place = {name: type(catalog.get(name)).__name__ for name in names
                if type(catalog.get(name)).__module__.startswith("kedro_datasets.")}
    # Figures are for people, not read back by any pipeline.
    assert set(in_place.values()) == {"MatplotlibDataset"}, in_place
    assert "pairing_map" in in_place, "the factories' datasets are checked too"
    for name in ("pretrain_metrics", "ingest_report", "evaluation_results"):
        assert isinstance(catalog.get(name), AtomicSaveMixin), name
