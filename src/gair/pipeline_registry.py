"""Project pipelines: every ``gair.pipelines.<name>`` package, and their chain."""

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

ON_REQUEST = ("sweep", "embed", "acquire")
"""Pipelines left out of ``__default__``: run them by name (``--pipelines sweep``);
``acquire`` reads a STAC API over the network."""


def register_pipelines() -> dict[str, Pipeline]:
    """Register each pipeline under its folder name; ``__default__`` chains the others.

    Kedro orders the nodes of the sum by their datasets, so the chain runs
    ``sample_world`` first (it writes the raw folders the later pipelines read).
    """
    pipelines = find_pipelines(raise_errors=True)
    pipelines["__default__"] = sum(
        (p for name, p in pipelines.items() if name not in ON_REQUEST), Pipeline([])
    )
    return pipelines
