"""Project hooks (registered in ``settings.py``)."""

from __future__ import annotations

from typing import Any

from kedro.framework.hooks import hook_impl

SWEEP_STORAGE_CREDENTIALS = "sweep_storage_credentials"
"""The catalog entry the sweep node reads its database credentials from."""


class SweepStorageCredentialsHook:
    """Hands the sweep node the credentials entry that ``sweep.storage: credentials:NAME``
    names (``conf/local/credentials.yml``). Kedro gives credentials to datasets only, and a
    database URL with its password as a parameter would be shown by kedro-viz and logs."""

    @hook_impl
    def after_catalog_created(self, catalog, conf_creds: dict[str, Any],
                              parameters: dict[str, Any]) -> None:
        storage = parameters.get("params:sweep.storage")
        entries = {}
        if isinstance(storage, str) and storage.startswith("credentials:"):
            name = storage.removeprefix("credentials:")
            # A missing entry fails when the sweep opens its storage, not every other run.
            entries = {name: conf_creds[name]} if name in (conf_creds or {}) else {}
        catalog[SWEEP_STORAGE_CREDENTIALS] = entries
