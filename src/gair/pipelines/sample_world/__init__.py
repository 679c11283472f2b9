"""``sample_world``: generate the embedded default dataset in real formats."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
