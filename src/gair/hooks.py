"""Project hooks (registered in ``settings.py``)."""

from __future__ import annotations

from typing import Any

from kedro.framework.hooks import hook_impl

SWEEP_STORAGE_CREDENTIALS = "sweep_storage_credentials"
"""The catalog entry the sweep node reads its database credentials from."""
TRACKING_CREDENTIALS = "tracking_credentials"
"""The catalog entry the tracking nodes read the MLflow tracking URI's credentials from."""


def _named_entry(reference: Any, conf_creds: dict[str, Any] | None) -> dict[str, Any]:
    """{NAME: entry} for a parameter that reads ``credentials:NAME``, else {}."""
    if not (isinstance(reference, str) and reference.startswith("credentials:")):
        return {}
    name = reference.removeprefix("credentials:")
    # A missing entry fails where it is used, not in every other run.
    return {name: conf_creds[name]} if name in (conf_creds or {}) else {}


class SweepStorageCredentialsHook:
    """Hands the sweep node the credentials entry that ``sweep.storage: credentials:NAME``
    names (``conf/local/credentials.yml``). Kedro gives credentials to datasets only, and a
    database URL with its password as a parameter would be shown by kedro-viz and logs."""

    @hook_impl
    def after_catalog_created(self, catalog, conf_creds: dict[str, Any],
                              parameters: dict[str, Any]) -> None:
        catalog[SWEEP_STORAGE_CREDENTIALS] = _named_entry(
            parameters.get("params:sweep.storage"), conf_creds)


class TrackingCredentialsHook:
    """Hands the nodes that log to MLflow the credentials entry that
    ``tracking.tracking_uri: credentials:NAME`` names, as the sweep's hook does."""

    @hook_impl
    def after_catalog_created(self, catalog, conf_creds: dict[str, Any],
                              parameters: dict[str, Any]) -> None:
        catalog[TRACKING_CREDENTIALS] = _named_entry(
            parameters.get("params:tracking.tracking_uri"), conf_creds)


class GeneratedFoldersHook:
    """Refuses a run, before any node, that would replace a folder its dataset may not
    replace (``gair.datasets.DirectoryDataset``: real data, or a generated folder with
    files added or edited since): the node would build the new folder only for the save
    to refuse it. Each output whose dataset has a ``check_replaceable`` method is asked;
    the save checks again."""

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline, catalog) -> None:
        for name in sorted(pipeline.all_outputs()):
            check = getattr(catalog.get(name), "check_replaceable", None)
            if callable(check):
                check()
