"""Figures and tables for the reports (matplotlib; no Kedro)."""
