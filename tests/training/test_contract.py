"""The preprocessing contract: written by training, read back, and enforced."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from gair.contract import CONTRACT_KEY, ContractError, LocationContract, PreprocessingContract
from gair.embed import load_model
from gair.io.l2a import GAIR_BANDS
from gair.parameters import PretrainParams
from gair.training import run_pretraining
from tests.training.conftest import TINY_MODEL, tiny_pretrain_params


@pytest.fixture(scope="module")
def checkpoint(tiny_shards, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("contract") / "run"
    params = PretrainParams(**tiny_pretrain_params(max_epochs=1), run_dir=str(run_dir))
    summary = run_pretraining({"shards_dir": str(tiny_shards), "run_dir": str(run_dir),
                               "params": params.model_dump(mode="json")})
    return summary, summary["best_checkpoint"] or summary["last_checkpoint"]


def test_contract_round_trips_through_the_checkpoint(checkpoint):
    summary, path = checkpoint
    stored = torch.load(path, map_location="cpu", weights_only=True)[CONTRACT_KEY]
    contract = PreprocessingContract.from_dict(stored)
    assert contract == PreprocessingContract.for_training(
        summary["band_mean"], summary["band_std"], 32, TINY_MODEL)
    assert contract.rs.bands == GAIR_BANDS and contract.rs.units == "reflectance_x10000"
    assert contract.rs.patch_size_px == 32 and contract.rs.model_input_px == 16
    assert contract.location.order == ("lat", "lon")
    assert PreprocessingContract.from_dict(contract.to_dict()) == contract


def test_a_model_loads_in_a_fresh_process_from_its_checkpoint_alone(checkpoint, tmp_path):
    _, path = checkpoint
    code = (f"import gair, numpy as np; m = gair.load_model(r'{path}'); "
            "e = m.encode_locations(np.array([[48.78, 9.18]])); "
            "print(m.contract.rs.bands[0], e.shape)")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                            text=True, check=True)
    assert result.stdout.split() == ["B02", "(1,", f"{TINY_MODEL['embed_dim']})"]


def test_checkpoints_written_before_the_official_nili_scale_keep_theirs(checkpoint, tmp_path):
    _, path = checkpoint
    content = torch.load(path, map_location="cpu", weights_only=True)
    del content["hyper_parameters"]["model"]["nili_offset_scale"]  # as written then
    contract = content[CONTRACT_KEY]
    contract["version"] = 1
    for section, keys in (("rs", ("normalization", "interpolation")), ("sv", ("interpolation",))):
        for key in keys:
            del contract[section][key]
    torch.save(content, tmp_path / "v1.ckpt")
    old = load_model(tmp_path / "v1.ckpt")
    assert old.model.config.nili_offset_scale == "half_grid"
    assert old.contract.rs.normalization == "zscore" and old.contract.rs.interpolation == "area"
    assert old.contract.sv.interpolation == "bilinear"
    new = load_model(path)
    assert new.model.config.nili_offset_scale == "grid", "stored explicitly by training"
    grid, _ = new.encode_rs(np.full((1, 10, 32, 32), 1200, dtype=np.uint16))
    # A single linear imnet's offset term cancels inside the hull of the cell centres
    # (the blend is bilinear there); the scale shows between the outer centres and the edge.
    inside, border = np.array([[0.3, -0.2]], np.float32), np.array([[0.9, -0.95]], np.float32)
    assert np.allclose(old.query_rs(grid, inside), new.query_rs(grid, inside), atol=1e-6)
    assert not np.allclose(old.query_rs(grid, border), new.query_rs(grid, border), atol=1e-4)


def test_checkpoints_without_a_contract_are_refused(checkpoint, tmp_path):
    _, path = checkpoint
    content = torch.load(path, map_location="cpu", weights_only=True)
    del content[CONTRACT_KEY]
    torch.save(content, tmp_path / "old.ckpt")
    with pytest.raises(ContractError, match="no preprocessing contract"):
        load_model(tmp_path / "old.ckpt")


@pytest.mark.parametrize(("patch", "message"), [
    (np.zeros((2, 13, 32, 32), np.uint16), "13 bands where 10 are expected.*L1C"),
    (np.zeros((2, 3, 32, 32), np.uint8), "3 bands where 10 .*RGB"),
    (np.full((2, 10, 32, 32), 0.12, np.float32), r"reflectance in \[0, 1\].*multiply by 10000"),
    (np.zeros((32, 32)), "must be"),
])
def test_rs_inputs_that_contradict_the_contract(checkpoint, patch, message):
    model = load_model(checkpoint[1])
    with pytest.raises(ContractError, match=message):
        model.encode_rs(patch)


def test_band_names_and_units_are_checked():
    contract = PreprocessingContract.for_training([0.0] * 10, [1.0] * 10, 96, TINY_MODEL).rs
    swapped = list(GAIR_BANDS)
    swapped[0], swapped[1] = swapped[1], swapped[0]
    with pytest.raises(ContractError, match="in this order"):
        contract.check(np.zeros((10, 8, 8), np.uint16), band_names=swapped)
    with pytest.raises(ContractError, match="units 'reflectance'"):
        contract.check(np.zeros((10, 8, 8), np.uint16), units="reflectance")
    contract.check(np.zeros((10, 8, 8), np.uint16), band_names=GAIR_BANDS)


def test_lon_lat_swapped_locations_are_refused(checkpoint):
    model = load_model(checkpoint[1])
    stuttgart_lon_lat = np.array([[48.78, 9.18], [103.8, 1.35]])  # second row: (lon, lat)
    with pytest.raises(ContractError, match=r"row 1 .*\(lon, lat\) given"):
        model.encode_locations(stuttgart_lon_lat)
    with pytest.raises(ContractError, match="not finite"):
        LocationContract.check(np.array([[np.nan, 1.0]]))
