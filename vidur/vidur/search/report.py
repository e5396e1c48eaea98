"""Search results: a table on the terminal, JSON and CSV files, and the cost-capacity frontier."""

import csv
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from vidur.search.runner import SearchPoint, best_point, pareto_frontier  # noqa: E402

CSV_COLUMNS = ("name", "feasible", "capacity_qps", "capped", "num_gpus", "cost_per_hour", "cost_per_qps", "reason")


def format_table(points: list[SearchPoint]) -> str:
    frontier = {p.name for p in pareto_frontier(points)}
    lines = [f"{'deployment':<52} {'QPS':>9} {'GPUs':>5} {'$/h':>8} {'$/h per QPS':>12}  frontier"]
    ranked = sorted(points, key=lambda p: (p.cost_per_qps is None, p.cost_per_qps or 0.0, p.name))
    for p in ranked:
        if not p.feasible:
            lines.append(f"{p.name:<52} {'-':>9} {'':>5} {'':>8} {'':>12}  infeasible: {p.reason}")
            continue
        capacity = f"{p.capacity_qps:.3g}" + ("+" if p.capped else "")
        per_qps = f"{p.cost_per_qps:.3f}" if p.cost_per_qps is not None else "-"
        mark = "*" if p.name in frontier else ""
        lines.append(f"{p.name:<52} {capacity:>9} {p.num_gpus:>5} {p.cost_per_hour:>8.2f} {per_qps:>12}  {mark}")
    best = best_point(points)
    if best is not None:
        lines.append(
            f"best: {best.name}: {best.capacity_qps:.3g} QPS for ${best.cost_per_hour:.2f}/h "
            f"(${best.cost_per_qps:.3f}/h per QPS, ${best.cost_per_million_requests:.2f} per million requests)"
        )
    else:
        lines.append("best: no deployment meets the SLO at any searched rate")
    return "\n".join(lines)


def plot_frontier(points: list[SearchPoint], path: Path) -> None:
    figure, axis = plt.subplots(figsize=(8, 5))
    feasible = [p for p in points if p.feasible and p.capacity_qps > 0]
    axis.scatter([p.cost_per_hour for p in feasible], [p.capacity_qps for p in feasible], s=18, alpha=0.6)
    frontier = pareto_frontier(points)
    axis.plot([p.cost_per_hour for p in frontier], [p.capacity_qps for p in frontier], "r-o", ms=4, label="frontier")
    for p in frontier:
        axis.annotate(p.name, (p.cost_per_hour, p.capacity_qps), fontsize=6, xytext=(3, 3), textcoords="offset points")
    axis.set_xlabel("cost ($/hour)")
    axis.set_ylabel("capacity (QPS under the SLO)")
    axis.set_title("cost vs capacity")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_search_results(points: list[SearchPoint], directory: Path, context: dict[str, object]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    best = best_point(points)
    document = {
        "context": context,
        "best": best.as_dict() if best is not None else None,
        "frontier": [p.name for p in pareto_frontier(points)],
        "points": [p.as_dict() for p in points],
    }
    (directory / "search.json").write_text(json.dumps(document, indent=2, default=str) + "\n")
    with (directory / "search.csv").open("w", newline="") as file:
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for p in points:
            row = p.as_dict()
            writer.writerow(["" if row[c] is None else row[c] for c in CSV_COLUMNS])
    plot_frontier(points, directory / "pareto.png")
