"""The pairs table and the shards folder are one unit: a pairs table that describes other
shards (a `pair` run interrupted between the two saves) is refused, not read."""

from __future__ import annotations

import geopandas as gpd
import pytest
from kedro.config import OmegaConfigLoader
from kedro.io import DataCatalog
from kedro.io.core import DatasetError

from gair.datasets import DerivedGeoParquetDataset
from gair.io.directories import stage_directory
from tests.conftest import temporary_conf


def _shards(staging_root, content: str):
    """A shards folder as the pair node hands it to the catalog."""
    def write(directory):
        (directory / "train").mkdir()
        (directory / "train" / "000000.tar").write_text(content)
        return {"content": content}

    return stage_directory(staging_root, "shards", write)


def _pairs(n: int) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame({"uuid": [f"u{i}" for i in range(n)], "shard": "train/000000.tar"},
                            geometry=gpd.points_from_xy(range(n), range(n)), crs="EPSG:4326")


@pytest.fixture()
def catalog(tmp_path):
    loader = OmegaConfigLoader(conf_source=str(temporary_conf(tmp_path)), base_env="base",
                               default_run_env="local")
    return DataCatalog.from_config(loader["catalog"])


def test_pairs_from_the_current_shards_load(catalog, tmp_path):
    catalog.save("training_shards", _shards(tmp_path / "staging", "one"))
    catalog.save("pairs", _pairs(3))
    pairs = catalog.load("pairs")
    assert list(pairs["uuid"]) == ["u0", "u1", "u2"] and pairs.crs.to_epsg() == 4326
    assert pairs.attrs == {}, "the record of the shards stays in the file"


def test_pairs_left_from_before_new_shards_are_refused(catalog, tmp_path):
    catalog.save("training_shards", _shards(tmp_path / "staging", "one"))
    catalog.save("pairs", _pairs(3))
    # The run is killed after the new shards are swapped in, before pairs.parquet is saved.
    catalog.save("training_shards", _shards(tmp_path / "staging", "two"))
    model_input = tmp_path / "data" / "05_model_input"
    with pytest.raises(DatasetError) as refused:
        catalog.load("pairs")
    message = str(refused.value)
    assert str(model_input / "pairs.parquet") in message
    assert str(model_input / "shards") in message
    assert "kedro run --pipelines pair" in message
    catalog.save("pairs", _pairs(2))  # the rerun writes them again
    assert len(catalog.load("pairs")) == 2


def test_pairs_without_a_record_of_their_shards_are_refused(tmp_path):
    dataset = DerivedGeoParquetDataset(filepath=str(tmp_path / "pairs.parquet"),
                                       derived_from=str(tmp_path / "shards"),
                                       rerun="kedro run --pipelines pair")
    with pytest.raises(DatasetError, match=r"shards, the folder it is made from, has no"):
        dataset.save(_pairs(1))
    _pairs(1).to_parquet(tmp_path / "pairs.parquet")  # written by an older gair
    with pytest.raises(DatasetError, match=r"does not record which .*kedro run --pipelines pair"):
        dataset.load()
