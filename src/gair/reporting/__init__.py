"""Figures and tables for the reports (matplotlib; no Kedro)."""

from matplotlib.figure import Figure


def note_figure(title: str, message: str) -> Figure:
    """A figure that says why the real one cannot be drawn (so every output still exists)."""
    figure = Figure(figsize=(6, 3.5), layout="constrained")
    ax = figure.add_subplot()
    ax.set_axis_off()
    ax.set_title(title)
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    return figure
