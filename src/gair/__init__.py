"""GAIR: geo-foundation model pretraining across Sentinel-2, street views and location."""

__version__ = "0.1.0"
