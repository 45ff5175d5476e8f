"""Aggregation of a sweep's finished tasks: one table in the FLS paper's layout (games as rows, agents as columns;
mean, std and number of seeds) as CSV and markdown, and plots."""

from __future__ import annotations

import math
from pathlib import Path

from rl_saliency import io
from rl_saliency.errors import DataError
from rl_saliency.sweep import layout

# metric columns, in the order the tables list them (others follow alphabetically)
METRIC_ORDER = ["score", "nss", "auc_judd", "auc_borji", "shuffled_auc", "kl_div", "cc", "sim", "info_gain"]


def collect_results(out: str | Path):
    """One row per finished task: game, agent, seed, score and the gaze metrics (pandas DataFrame)."""
    import pandas as pd

    rows = []
    for path in sorted((Path(out) / layout.TASKS_DIR).glob(f"*/{layout.RESULT_FILE}")):
        result = layout.read_json(path)
        row = {"game": result["game"], "agent": result["agent"], "seed": result["seed"], "score": result["score"],
               "episodes": result.get("episodes")}
        row.update(result.get("gaze") or {})
        rows.append(row)
    return pd.DataFrame(rows)


def _metric_columns(results) -> list[str]:
    known = [m for m in METRIC_ORDER if m in results.columns]
    others = sorted(c for c in results.columns if c not in {"game", "agent", "seed", "episodes", *known}
                    and results[c].dtype.kind in "fi")
    return known + others


def summary_table(results, games: list[str] | None = None, agents: list[str] | None = None):
    """Mean, std (over seeds) and seed count per (metric, game) row and agent column."""
    import pandas as pd

    metrics = _metric_columns(results)
    long = results.melt(id_vars=["game", "agent", "seed"], value_vars=metrics, var_name="metric").dropna()
    stats = long.groupby(["metric", "game", "agent"])["value"].agg(["mean", "std", "count"])
    stats = stats.rename(columns={"count": "n"}).unstack("agent")
    games = games or list(dict.fromkeys(results["game"]))
    agents = agents or list(dict.fromkeys(results["agent"]))
    agents = [a for a in agents if a in set(results["agent"])]
    order = [(m, g) for m in metrics for g in games if (m, g) in stats.index]
    stats = stats.reindex(index=pd.MultiIndex.from_tuples(order, names=["metric", "game"]))
    columns = [(stat, agent) for agent in agents for stat in ("mean", "std", "n")]
    stats = stats.reindex(columns=pd.MultiIndex.from_tuples(columns))
    stats.columns = [f"{agent} {stat}" for stat, agent in stats.columns]
    return stats


def _markdown(table, agents: list[str]) -> str:
    lines = []
    for metric in dict.fromkeys(table.index.get_level_values("metric")):
        block = table.loc[metric]
        lines += [f"## {metric}", "", "| game | " + " | ".join(agents) + " |", "|---" * (len(agents) + 1) + "|"]
        for game, row in block.iterrows():
            cells = []
            for agent in agents:
                mean, std, n = row[f"{agent} mean"], row[f"{agent} std"], row[f"{agent} n"]
                if math.isnan(mean):
                    cells.append("-")
                else:
                    spread = f" ± {std:.3g}" if not math.isnan(std) else ""
                    cells.append(f"{mean:.4g}{spread} (n={int(n)})")
            lines.append(f"| {game} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _plot(results, metric: str, games: list[str], agents: list[str], path: Path) -> None:
    """One panel per game (scales differ across games): a bar per agent (mean, std error bar) and the seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    games = [g for g in games if results.loc[results["game"] == g, metric].notna().any()]
    fig, axes = plt.subplots(1, len(games), figsize=(max(4.0, 0.9 * len(agents) + 1.5) * len(games), 3.6),
                             squeeze=False)
    for ax, game in zip(axes[0], games, strict=True):
        rows = results[results["game"] == game]
        for i, agent in enumerate(agents):
            values = rows.loc[rows["agent"] == agent, metric].dropna()
            if values.empty:
                continue
            ax.bar(i, values.mean(), yerr=values.std() if len(values) > 1 else None, color=f"C{i}", capsize=4,
                   alpha=0.8)
            ax.scatter([i] * len(values), values, color="black", s=10, zorder=3)
        ax.set_xticks(range(len(agents)), agents, rotation=30, ha="right")
        ax.set_title(game)
        ax.set_ylabel(metric)
    fig.tight_layout()
    io.atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100))
    plt.close(fig)


def aggregate(out: str | Path):
    """Write ``results.csv`` (one row per task), ``table.csv`` / ``table.md`` (paper layout) and the plots
    ``score.png`` / ``nss.png``; return the table (None when no task has finished)."""
    out = Path(out)
    results = collect_results(out)
    if results.empty:
        return None
    grid_file = out / layout.GRID_FILE
    order = (io.read_yaml(grid_file, "sweep grid", DataError) if grid_file.exists() else None) or {}
    games = [g for g in order.get("games") or [] if g in set(results["game"])] or list(dict.fromkeys(results["game"]))
    agents = ([a for a in order.get("agents") or [] if a in set(results["agent"])]
              or list(dict.fromkeys(results["agent"])))
    results = results.sort_values(["game", "agent", "seed"])

    write = io.atomic_write
    table = summary_table(results, games, agents)
    write(out / "results.csv", lambda p: results.to_csv(p, index=False))
    write(out / "table.csv", lambda p: table.to_csv(p))
    write(out / "table.md", lambda p: p.write_text(_markdown(table, agents)))
    for metric in ("score", "nss"):
        if metric in results.columns and results[metric].notna().any():
            _plot(results, metric, games, agents, out / f"{metric}.png")
    return table
