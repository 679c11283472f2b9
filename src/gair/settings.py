"""Kedro project settings (https://docs.kedro.org/en/stable/kedro_project_setup/settings.html)."""

from kedro.config import OmegaConfigLoader

from gair.hooks import GeneratedFoldersHook, SweepStorageCredentialsHook, TrackingCredentialsHook

HOOKS = (SweepStorageCredentialsHook(), TrackingCredentialsHook(), GeneratedFoldersHook())

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # An environment overrides single keys (e.g. sweep.storage in conf/local) and keeps the rest.
    "merge_strategy": {"parameters": "soft"},
}
