"""Training on CPU: data streaming, a real Lightning fit, exact resume, parameters."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from gair.contract import PreprocessingContract
from gair.parameters import PretrainParams
from gair.training import ShardedPairs, run_pretraining
from gair.training.data import PairsDataModule, band_statistics
from tests.training.conftest import TINY_MODEL, tiny_pretrain_params


def _spec(shards, run_dir, workers: int = 0, **trainer) -> dict:
    raw = tiny_pretrain_params(**trainer)
    raw["data"]["num_workers"] = workers
    params = PretrainParams(**raw, run_dir=str(run_dir))
    return {"shards_dir": str(shards), "run_dir": str(run_dir),
            "params": params.model_dump(mode="json")}


def test_datamodule_batches(tiny_shards):
    mean, std = band_statistics(sorted(tiny_shards.rglob("*.tar")), 16)
    assert len(mean) == len(std) == 10 and all(s > 0 for s in std)
    contract = PreprocessingContract.for_training(mean, std, 32, TINY_MODEL)
    module = PairsDataModule(str(tiny_shards), 4, contract, 0, 0, 8)
    module.setup()
    compact = next(iter(module.train_dataloader()))
    # What travels to the device: stored reflectance, uint8 street views, the draws.
    assert compact["rs"].shape == (4, 10, 32, 32) and compact["rs"].dtype == torch.uint16
    assert compact["valid"].shape == (4, 32, 32) and compact["valid"].dtype == torch.bool
    assert compact["sv"].shape == (4, 3, 16, 16) and compact["sv"].dtype == torch.uint8
    assert compact["augment"]["sv_factors"].shape == (4, 3)
    batch = module.on_after_batch_transfer(compact, 0)
    assert batch["rs"].shape == (4, 10, 16, 16) and batch["sv"].shape == (4, 3, 16, 16)
    assert batch["rs"].dtype == batch["sv"].dtype == torch.float32
    assert batch.keys() == {"rs", "sv", "query", "latlon", "uuid"}
    assert batch["query"].shape == (4, 2) and batch["query"].abs().max() <= 1
    assert batch["latlon"].shape == (4, 2)
    assert len(module.train_set) % 4 == 0


def test_slots_yield_equal_disjoint_parts(tiny_shards):
    import pandas as pd

    table = pd.read_parquet(tiny_shards / "samples.parquet")
    train = table[table["split"] == "train"]
    counts = {str(tiny_shards / k): int(v) for k, v in train["shard"].value_counts().items()}
    for shuffle in (False, True):
        dataset = ShardedPairs([tiny_shards / s for s in counts], counts, lambda s, rng: s.key,
                               shuffle=shuffle, buffer_size=4)
        for slots in (1, 2, 3, len(counts) + 2):
            parts = [list(dataset.iter_slot(slot, slots)) for slot in range(slots)]
            assert len({len(p) for p in parts}) == 1, "every slot yields as many samples"
            flat = [key for part in parts for key in part]
            assert len(flat) == len(set(flat)), "no sample is read by two slots"
            assert set(flat) <= set(train["uuid"])
            assert len(flat) > 0.6 * len(train)


class _Crash(Callback):
    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            raise RuntimeError("killed")


@pytest.mark.slow
@pytest.mark.parametrize("workers", [0, 2])
def test_resumed_run_ends_like_an_uninterrupted_one(tiny_shards, tmp_path, workers):
    """With workers, the resumed run's fresh workers start at epoch 1 and the straight
    run's persistent workers are told it: both must see the same batches."""
    straight = run_pretraining(_spec(tiny_shards, tmp_path / "a", workers))
    spec = _spec(tiny_shards, tmp_path / "b", workers)
    with pytest.raises(RuntimeError, match="killed"):
        run_pretraining(spec, callbacks=[_Crash()])
    assert (tmp_path / "b" / "checkpoints" / "last.ckpt").is_file()
    resumed = run_pretraining(spec)
    # Two epochs of 4 batches; two worker slots hold one batch each of the tiny world.
    assert resumed["global_step"] == straight["global_step"] == {0: 8, 2: 4}[workers]
    final_a = torch.load(tmp_path / "a" / "checkpoints" / "last.ckpt", weights_only=True)
    final_b = torch.load(tmp_path / "b" / "checkpoints" / "last.ckpt", weights_only=True)
    for name, tensor in final_a["state_dict"].items():
        assert torch.allclose(tensor.float(), final_b["state_dict"][name].float(), atol=1e-6), name
    for key, value in straight["metrics"].items():
        assert resumed["metrics"][key] == pytest.approx(value, abs=1e-5), key
    from gair.training.run import read_history

    history_a, history_b = read_history(tmp_path / "a"), read_history(tmp_path / "b")
    assert history_b["epoch"].max() == 1 and 0 in set(history_b["epoch"]), "history survives"
    assert history_b["train/loss"].dropna().tolist() == pytest.approx(
        history_a["train/loss"].dropna().tolist(), abs=1e-6)


@pytest.mark.slow
def test_changed_parameters_or_a_finished_run_start_afresh(tiny_shards, tmp_path):
    run_pretraining(_spec(tiny_shards, tmp_path / "r", max_epochs=1))
    summary = run_pretraining(_spec(tiny_shards, tmp_path / "r", max_epochs=2))
    assert summary["epochs"] == 2 and summary["global_step"] == 8
    again = run_pretraining(_spec(tiny_shards, tmp_path / "r", max_epochs=2))
    assert again["global_step"] == 8 and "val/r@1" in again["metrics"]


def test_pretrain_params_validate_and_know_when_to_launch():
    params = PretrainParams(**tiny_pretrain_params())
    assert not params.needs_launcher()
    assert PretrainParams(**tiny_pretrain_params(devices=2)).needs_launcher()
    assert PretrainParams(**tiny_pretrain_params(num_nodes=2)).needs_launcher()
    with pytest.raises(ValueError, match="blr"):
        PretrainParams(**(tiny_pretrain_params() | {"optimizer": {"blr": -1}}))


@pytest.mark.slow
def test_compiled_encoders_resume_a_run_and_keep_their_names(tiny_shards, tmp_path):
    """``performance`` changes how fast a run goes, not what it computes: switching
    compilation on resumes an interrupted run, and checkpoints keep the plain names."""
    spec = _spec(tiny_shards, tmp_path / "r")
    with pytest.raises(RuntimeError, match="killed"):
        run_pretraining(spec, callbacks=[_Crash()])
    compiled = spec | {"params": spec["params"] | {"performance": {
        "compile": True, "compile_backend": "eager", "float32_matmul_precision": "highest"}}}
    resumed = run_pretraining(compiled)
    assert resumed["global_step"] == 8 and resumed["epochs"] == 2
    state = torch.load(resumed["last_checkpoint"], weights_only=True)["state_dict"]
    assert "model.rs_encoder.vit.patch_embed.proj.weight" in state
    assert not any("_orig_mod" in key for key in state)
    history = pd.read_csv(tmp_path / "r" / "logs" / "version_0" / "metrics.csv")
    assert history["epoch"].max() == 0, "the first launch stopped in its second epoch"
