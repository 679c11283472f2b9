"""GAIR model code (timm-style, no Kedro): encoders, location encoder, NILI, losses.

The names below are imported on first use, so the configuration classes
(:mod:`gair.model.config`) can be read without loading torch and timm.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_HOMES = {
    "GAIR": "gair.model.gair",
    "GAIRConfig": "gair.model.config",
    "GAIRLoss": "gair.model.losses",
    "LocationEncoder": "gair.model.location",
    "LossConfig": "gair.model.config",
    "NILI": "gair.model.nili",
    "equal_earth_projection": "gair.model.location",
}

__all__ = ["GAIR", "NILI", "GAIRConfig", "GAIRLoss", "LocationEncoder", "LossConfig",
           "equal_earth_projection"]

if TYPE_CHECKING:
    from gair.model.config import GAIRConfig, LossConfig
    from gair.model.gair import GAIR
    from gair.model.location import LocationEncoder, equal_earth_projection
    from gair.model.losses import GAIRLoss
    from gair.model.nili import NILI


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
