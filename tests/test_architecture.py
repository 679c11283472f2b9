"""One-way imports: the import contracts in pyproject.toml hold, and ``gair.load_model``
loads no training, sweep, tracking or Kedro stack."""

from __future__ import annotations

import os
import pkgutil
import subprocess
import sys
import tomllib

from tests.conftest import PROJECT_ROOT

KEDRO_MODULES = {"pipelines", "datasets", "hooks", "settings", "pipeline_registry", "__main__"}
NOT_FOR_LOAD_MODEL = ("lightning", "pytorch_lightning", "lightning_fabric", "kedro", "optuna",
                      "optuna_integration", "mlflow", "gair.training", "gair.sweep",
                      "gair.tracking")


def _run(*args: str) -> subprocess.CompletedProcess:
    # This checkout's src first: the environment's editable install may point at another one.
    path = os.pathsep.join(filter(None, [str(PROJECT_ROOT / "src"), os.environ.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, *args], cwd=PROJECT_ROOT, capture_output=True,
                          text=True, check=False, env=os.environ | {"PYTHONPATH": path})


def test_the_import_contracts_are_kept():
    result = _run("-c", "from importlinter.cli import lint_imports_command; lint_imports_command()",
                  "pyproject.toml", "--no-cache", "--no-logo")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_every_library_module_is_under_the_no_kedro_contract():
    config = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = [c for c in config["contracts"] if c["id"] == "no-kedro-in-library"]
    top_level = {m.name for m in pkgutil.iter_modules([str(PROJECT_ROOT / "src" / "gair")])}
    assert top_level - KEDRO_MODULES == {m.removeprefix("gair.") for m in contract["source_modules"]}


def test_load_model_loads_no_training_sweep_tracking_or_kedro():
    # At run time, not statically: importing gair.x.y runs gair/x/__init__.py first, which
    # import-linter does not see.
    result = _run("-c", "import sys; from gair import load_model; print(*sys.modules)")
    assert result.returncode == 0, result.stderr[-2000:]
    loaded = set(result.stdout.split())
    found = [m for m in NOT_FOR_LOAD_MODEL
             if m in loaded or any(n.startswith(f"{m}.") for n in loaded)]
    assert not found, f"`from gair import load_model` loads {found}"


def test_configuration_and_band_facts_load_no_raster_or_deep_learning_stack():
    # At run time: gair/model/__init__.py and gair/io/__init__.py run first.
    light = ("gair.parameters", "gair.contract", "gair.model.config", "gair.io.l2a")
    result = _run("-c", f"import sys; import {', '.join(light)}; print(*sys.modules)")
    assert result.returncode == 0, result.stderr[-2000:]
    loaded = set(result.stdout.split())
    heavy = [m for m in ("rasterio", "torch", "torchvision", "timm", "lightning") if m in loaded]
    assert not heavy, f"importing {light} loads {heavy}"
