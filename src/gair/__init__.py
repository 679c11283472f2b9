"""GAIR: geo-foundation model pretraining across Sentinel-2, street views and location.

``gair.load_model(path)`` rebuilds a trained model from its checkpoint alone (this
project's, a ``gair.save_pretrained`` folder, or the official GAIR release); see
:mod:`gair.embed` for embedding your own data with it.
"""

import os

__version__ = "0.1.0"

# MLflow (experiment tracking) sends usage telemetry unless told not to: set before any
# import of mlflow, as Kedro's telemetry and DVC's analytics are off in the project's config.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def __getattr__(name: str):
    # Lazy: `import gair` (Kedro's CLI does) must not import torch.
    if name in ("load_model", "save_pretrained"):
        from gair.embed import model

        return getattr(model, name)
    raise AttributeError(f"module 'gair' has no attribute {name!r}")
