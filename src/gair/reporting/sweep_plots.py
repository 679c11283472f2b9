"""Figures of an Optuna study (matplotlib, so Kedro-Viz previews them as images)."""

from __future__ import annotations

import warnings

import optuna
from matplotlib.figure import Figure
from optuna.importance import PedAnovaImportanceEvaluator

from gair.reporting import note_figure


def sweep_figures(study: optuna.Study, metric: str) -> tuple[Figure, Figure, Figure]:
    """Optimisation history, parameter importances and parallel coordinates; a figure that
    cannot be drawn yet says why instead. Importances use PED-ANOVA, which draws no random
    numbers (so the figure reproduces) and needs no scikit-learn (fANOVA does)."""
    from optuna.visualization import matplotlib as plots

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    completed = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    figures = []
    for title, draw in (
        ("optimisation history", lambda: plots.plot_optimization_history(study, target_name=metric)),
        ("parameter importances", lambda: plots.plot_param_importances(
            study, evaluator=PedAnovaImportanceEvaluator(), target_name=metric)),
        ("parallel coordinates", lambda: plots.plot_parallel_coordinate(study, target_name=metric)),
    ):
        if len(completed) < 2:
            figures.append(note_figure(title, f"{len(completed)} completed trial(s): not enough to plot"))
            continue
        try:
            ax = draw()
        except (ValueError, RuntimeError) as error:
            figures.append(note_figure(title, str(error)))
            continue
        figure = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
        figure.set_size_inches(8, 4.5)
        figures.append(figure)
    return tuple(figures)
