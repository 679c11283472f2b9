"""GAIR: geo-foundation model pretraining across Sentinel-2, street views and location.

``gair.load_model(path)`` rebuilds a trained model from its checkpoint alone; see
:mod:`gair.embed` for embedding your own data with it.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    # Lazy: `import gair` (Kedro's CLI does) must not import torch.
    if name == "load_model":
        from gair.embed.model import load_model

        return load_model
    raise AttributeError(f"module 'gair' has no attribute {name!r}")
