"""The typed parameters: one home per configuration, overrides validated again."""

from __future__ import annotations

import pydantic
import pytest

from gair.model.config import GAIRConfig, LossConfig
from gair.parameters import PretrainParams


def test_the_model_and_loss_sections_are_the_library_configurations():
    params = PretrainParams(model={"embed_dim": 64}, loss={"temperature": 0.1})
    assert type(params.model) is GAIRConfig and type(params.loss) is LossConfig
    assert params.model.rs_encoder == GAIRConfig().rs_encoder  # the one default
    with pytest.raises(pydantic.ValidationError, match="queue_size must be at least 1"):
        PretrainParams(loss={"secl_negatives": "queue", "queue_size": 0})


def test_overrides_by_dotted_key_are_validated_again():
    base = PretrainParams()
    changed = base.with_overrides({"loss.temperature": 0.2, "seed": 3,
                                   "model.rs_encoder.depth": 2})
    assert (changed.loss.temperature, changed.seed) == (0.2, 3)
    assert changed.model.rs_encoder.model_dump()["depth"] == 2
    assert base.loss.temperature == LossConfig().temperature, "the original is unchanged"
    with pytest.raises(pydantic.ValidationError, match="temperatur"):
        base.with_overrides({"loss.temperatur": 0.2})
    with pytest.raises(pydantic.ValidationError, match="greater than 0"):
        base.with_overrides({"loss.temperature": -1})
    with pytest.raises(KeyError, match="'seed' is not a section"):
        base.with_overrides({"seed.value": 1})
