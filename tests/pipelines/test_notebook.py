"""The exploration notebook runs top to bottom on the pipeline outputs."""

from __future__ import annotations

import nbclient
import nbformat
import pytest

from tests.conftest import PROJECT_ROOT


@pytest.mark.slow
def test_exploration_notebook_executes(evaluated, monkeypatch):
    monkeypatch.setenv("GAIR_CONF_SOURCE", str(evaluated.parent / "conf"))
    notebook = nbformat.read(PROJECT_ROOT / "notebooks" / "explore_gair.ipynb", as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(PROJECT_ROOT / "notebooks")}})
    client.execute()
    outputs = [o for cell in notebook.cells for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "rank of the true patch" in text and "evaluation results:" in text
    markdown = [o for o in outputs if "text/markdown" in o.get("data", {})]
    assert markdown and "GAIR beats random weights" in markdown[0]["data"]["text/markdown"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 3, "the map, the street view with its patch, the neighbours"
