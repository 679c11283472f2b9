"""GAIR model code (timm-style, no Kedro): encoders, location encoder, NILI, losses."""

from gair.model.gair import GAIR, GAIRConfig
from gair.model.location import LocationEncoder, equal_earth_projection
from gair.model.losses import GAIRLoss, LossConfig
from gair.model.nili import NILI

__all__ = ["GAIR", "NILI", "GAIRConfig", "GAIRLoss", "LocationEncoder", "LossConfig",
           "equal_earth_projection"]
