"""Project pipelines: every ``gair.pipelines.<name>`` package, and their whole chain."""

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline


def register_pipelines() -> dict[str, Pipeline]:
    """Register each pipeline under its folder name; ``__default__`` chains them all.

    Kedro orders the nodes of the sum by their datasets, so the chain runs
    ``sample_world`` first (it writes the raw folders the later pipelines read).
    """
    pipelines = find_pipelines(raise_errors=True)
    pipelines["__default__"] = sum(pipelines.values(), Pipeline([]))
    return pipelines
