"""Kedro pipelines: thin wiring of library calls, one package per pipeline."""
