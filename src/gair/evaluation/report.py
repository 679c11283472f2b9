"""From the long results table to what a paper prints: flat metrics for DVC, a Markdown
table (tasks x models, best in bold), the seed comparison against random weights, and
figures (a bar chart, retrieval examples, a map of geolocalisation errors)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.colors as mcolors
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from gair.evaluation.suite import DOWNSTREAM, NILI_CONTROLS, TASKS

TASK_BY_NAME = {t.name: t for t in TASKS}


def flat_metrics(results: pd.DataFrame) -> dict[str, float]:
    """``eval/<task>/<model>/<metric>`` -> value, sorted, rounded to 6 digits."""
    return {f"eval/{r.task}/{r.model}/{r.metric}": round(float(r.value), 6)
            for r in results.sort_values(["task", "model", "metric"]).itertuples()}


def headline(results: pd.DataFrame) -> pd.DataFrame:
    """Tasks x models table of each task's headline metric (NaN where not applicable)."""
    rows = [r for r in results.itertuples()
            if r.task in TASK_BY_NAME and r.metric == TASK_BY_NAME[r.task].headline]
    table = pd.DataFrame(rows).pivot(index="task", columns="model", values="value")
    order = [t.name for t in TASKS if t.name in table.index]
    return table.loc[order]


def seed_comparison(results: pd.DataFrame, gair: Sequence[str],
                    random: Sequence[str]) -> pd.DataFrame:
    """Per downstream task: GAIR and random-weight scores per seed, the margin of GAIR's
    mean over random's mean (sign-adjusted so that positive is better), the larger of the
    two seed spreads, and whether the margin exceeds that spread."""
    scores = headline(results)
    rows = []
    for task in DOWNSTREAM:
        if task not in scores.index:
            continue
        g, r = scores.loc[task, list(gair)].to_numpy(), scores.loc[task, list(random)].to_numpy()
        sign = 1.0 if TASK_BY_NAME[task].higher_is_better else -1.0
        margin = sign * (g.mean() - r.mean())
        spread = max(np.ptp(g), np.ptp(r))
        rows.append({"task": task, **{m: v for m, v in zip(gair, g, strict=True)},
                     **{m: v for m, v in zip(random, r, strict=True)},
                     "margin": margin, "seed_spread": spread, "gair_wins": bool(margin > spread)})
    return pd.DataFrame(rows)


def nili_margins(results: pd.DataFrame, groups: dict[str, Sequence[str]]) -> pd.DataFrame:
    """What the query at the street view adds over each position-free control
    (:data:`~gair.evaluation.suite.NILI_CONTROLS`), per group of models (e.g. GAIR's seeds,
    random weights' seeds): the margin per seed, its mean, and whether NILI is ahead on
    every seed."""
    scores = headline(results)
    rows = []
    for group, members in groups.items():
        models = [m for m in members if m in scores.columns]
        for task, control in NILI_CONTROLS:
            if not models or task not in scores.index or control not in scores.index:
                continue
            margins = (scores.loc[task, models] - scores.loc[control, models]).to_numpy(float)
            rows.append({"group": group, "task": task, "control": control,
                         "margins": margins.tolist(), "mean": float(margins.mean()),
                         "ahead_every_seed": bool((margins > 0).all())})
    return pd.DataFrame(rows)


def nili_table(margins: pd.DataFrame) -> str:
    lines = ["| Models | NILI at the view | position-free control | margin per seed | mean | "
             "NILI ahead on every seed |", "|---|---|---|---|---:|:---:|"]
    for row in margins.itertuples(index=False):
        lines.append(f"| {row.group} | {TASK_BY_NAME[row.task].title} | "
                     f"{TASK_BY_NAME[row.control].title.removeprefix('control: ')} | "
                     + ", ".join(f"{m:+.3f}" for m in row.margins)
                     + f" | {row.mean:+.3f} | {'yes' if row.ahead_every_seed else 'no'} |")
    return "\n".join(lines) + "\n"


def _fmt(value: float) -> str:
    return "–" if pd.isna(value) else f"{value:.3f}"


def markdown_table(results: pd.DataFrame, models: Sequence[str], gair: Sequence[str],
                   random: Sequence[str], chance: dict[str, float]) -> str:
    """The results as Markdown: headline metric per task and model (best in bold), then
    the comparison of GAIR with random weights across seeds."""
    scores = headline(results)
    models = [m for m in models if m in scores.columns]
    lines = ["| Task | " + " | ".join(models) + " | chance |",
             "|---|" + "---:|" * (len(models) + 1)]
    for task, row in scores.iterrows():
        spec = TASK_BY_NAME[task]
        values = row[models]
        best = values.max() if spec.higher_is_better else values.min()
        cells = [f"**{_fmt(v)}**" if v == best else _fmt(v) for v in values]
        lines.append(f"| {spec.title} | " + " | ".join(cells) + f" | {_fmt(chance.get(task))} |")
    comparison = seed_comparison(results, gair, random)
    lines += ["", "| Task | " + " | ".join([*gair, *random]) + " | margin | seed spread | "
              "GAIR beats random |", "|---|" + "---:|" * (len(gair) + len(random) + 2) + ":---:|"]
    for row in comparison.itertuples(index=False):
        values = [_fmt(getattr(row, m)) for m in (*gair, *random)]
        lines.append(f"| {row.task} | " + " | ".join(values) + f" | {_fmt(row.margin)} | "
                     f"{_fmt(row.seed_spread)} | {'yes' if row.gair_wins else 'no'} |")
    wins = int(comparison["gair_wins"].sum())
    lines += ["", f"GAIR beats random weights by more than the seed spread on {wins} of "
              f"{len(comparison)} downstream tasks."]
    margins = nili_margins(results, {"GAIR": gair, "random weights": random})
    if len(margins):
        lines += ["", "What NILI adds: the score with the RS query at the street view minus "
                  "the same probe with a position-free RS feature (the query at the patch "
                  "centre, or the global RS embedding).", "", nili_table(margins).rstrip()]
    return "\n".join(lines) + "\n"


def benchmark_table(results: pd.DataFrame) -> str:
    """Real benchmarks as Markdown: per benchmark and model, accuracy (classification) or
    R² (regression) of the linear probe."""
    metric = results.groupby("task")["metric"].agg(lambda m: "acc" if "acc" in set(m) else "r2")
    rows = results[results["metric"] == results["task"].map(metric)]
    table = rows.pivot(index="task", columns="model", values="value")
    lines = ["| Benchmark | metric | " + " | ".join(table.columns) + " |",
             "|---|---|" + "---:|" * len(table.columns)]
    for task, row in table.iterrows():
        lines.append(f"| {task.removeprefix('bench_')} | {metric[task]} | "
                     + " | ".join(_fmt(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def bar_chart(results: pd.DataFrame, models: Sequence[str]) -> Figure:
    """One panel per task: the headline metric of every model."""
    scores = headline(results)
    models = [m for m in models if m in scores.columns]
    rows = -(-len(scores) // 4)
    figure = Figure(figsize=(3.2 * 4, 2.8 * rows), layout="constrained")
    axes = np.atleast_1d(figure.subplots(rows, 4)).ravel()
    colours = [mcolors.TABLEAU_COLORS[c] for c in list(mcolors.TABLEAU_COLORS)[: len(models)]]
    for ax, (task, row) in zip(axes, scores.iterrows(), strict=False):
        values = row[models].to_numpy(dtype=float)
        ax.bar(range(len(models)), np.nan_to_num(values), color=colours)
        ax.set_xticks(range(len(models)), models, rotation=60, ha="right", fontsize=7)
        ax.set_title(TASK_BY_NAME[task].title, fontsize=8)
    for ax in axes[len(scores):]:
        ax.set_axis_off()
    return figure


def rgb(reflectance: np.ndarray) -> np.ndarray:
    """A display RGB [S, S, 3] in [0, 1] of a 10-band GAIR patch (B04, B03, B02)."""
    image = reflectance[[2, 1, 0]].astype(np.float32).transpose(1, 2, 0) / 10000.0
    return np.clip(image / max(np.percentile(image, 99), 1e-6), 0, 1)


def retrieval_examples(queries: Sequence[dict], gallery: Sequence[np.ndarray],
                       similarity: np.ndarray, top_k: int = 5) -> Figure:
    """Rows of: a street view, then its ``top_k`` most similar RS patches; the true patch
    is framed in green (and shown last, with its rank, when outside the top k).

    ``queries`` are dicts with ``sv`` (an RGB array) and ``index`` (the true gallery item);
    ``gallery`` are 10-band reflectance patches; ``similarity`` is [queries, gallery].
    """
    figure = Figure(figsize=(1.6 * (top_k + 2), 1.7 * len(queries)), layout="constrained")
    axes = np.atleast_2d(figure.subplots(len(queries), top_k + 2))
    for row, (query, scores) in enumerate(zip(queries, similarity, strict=True)):
        order = np.argsort(-scores, kind="stable")
        rank = int(np.flatnonzero(order == query["index"])[0]) + 1
        axes[row, 0].imshow(query["sv"])
        axes[row, 0].set_title("street view", fontsize=7)
        shown = [*order[:top_k], query["index"]]
        for col, item in enumerate(shown, start=1):
            ax = axes[row, col]
            ax.imshow(rgb(gallery[item]))
            hit = item == query["index"]
            title = f"#{col}" if col <= top_k else f"true: rank {rank}"
            ax.set_title(title, fontsize=7, color="green" if hit else "black")
            if hit:
                for spine in ax.spines.values():
                    spine.set(edgecolor="green", linewidth=3)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    return figure


def geolocalisation_map(true_latlon: np.ndarray, predicted_latlon: np.ndarray,
                        errors_km: np.ndarray, groups: Sequence[str]) -> Figure:
    """Per group (e.g. tile), the test street views coloured by geolocalisation error,
    with a line to the predicted place when it lies in the same panel; and the error
    distribution."""
    names = sorted(set(groups))
    figure = Figure(figsize=(3.2 * (len(names) + 1), 3.2), layout="constrained")
    axes = np.atleast_1d(figure.subplots(1, len(names) + 1))
    groups = np.asarray(groups)
    norm = mcolors.LogNorm(vmin=max(errors_km.min(), 0.01), vmax=max(errors_km.max(), 0.1))
    scatter = None
    for ax, name in zip(axes, names, strict=False):
        members = groups == name
        t, p, e = true_latlon[members], predicted_latlon[members], errors_km[members]
        lat_lim = (t[:, 0].min() - 0.01, t[:, 0].max() + 0.01)
        lon_lim = (t[:, 1].min() - 0.01, t[:, 1].max() + 0.01)
        for (tl, tn), (pl, pn) in zip(t, p, strict=True):
            if lat_lim[0] <= pl <= lat_lim[1] and lon_lim[0] <= pn <= lon_lim[1]:
                ax.plot([tn, pn], [tl, pl], c="grey", lw=0.5)
        scatter = ax.scatter(t[:, 1], t[:, 0], c=np.maximum(e, 0.01), norm=norm, cmap="viridis",
                             s=14)
        ax.set(title=f"{name.rsplit('_', 2)[0]} (median {np.median(e):.1f} km)", xlim=lon_lim,
               ylim=lat_lim, xlabel="lon", ylabel="lat")
        ax.tick_params(labelsize=6)
        ax.title.set_fontsize(8)
    if scatter is not None:
        figure.colorbar(scatter, ax=axes[:-1], label="error (km)", shrink=0.8)
    axes[-1].hist(np.log10(np.maximum(errors_km, 0.01)), bins=30)
    axes[-1].set(title="log10 error (km)", xlabel="log10 km", ylabel="street views")
    return figure
