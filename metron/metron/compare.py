"""Two runs side by side: the headline figures, their ratio, and overlaid plots."""

from pathlib import Path

from metron import plots
from metron.report import number
from metron.run_format import read_run

COMPARED = (
    "num_requests",
    "error_rate",
    "ttft_s.p50",
    "ttft_s.p99",
    "tbt_s.p50",
    "tbt_s.p99",
    "tpot_s.mean",
    "normalized_latency_s.p50",
    "normalized_latency_s.p99",
    "scheduling_delay_s.p50",
    "fluidity_index.mean",
    "miss_rate.p99",
    "fluid_token_rate_per_s",
    "tpot_token_rate_per_s",
    "p99_tbt_token_rate_per_s",
    "request_throughput_per_s",
    "output_token_throughput_per_s",
    "goodput_per_s",
)


def compare_runs(first: str | Path, second: str | Path, output_dir: str | Path | None = None) -> str:
    """A Markdown table of both runs' figures (and B / A); with `output_dir`, also writes
    `comparison.md` and overlaid CDF and fluidity plots there."""
    run_a, run_b = read_run(first), read_run(second)
    name_a, name_b = f"A: {run_a.directory.name}", f"B: {run_b.directory.name}"
    lines = [f"| metric | {name_a} | {name_b} | B / A |", "| --- | --- | --- | --- |"]
    for key in COMPARED:
        a, b = run_a.metrics.get(key), run_b.metrics.get(key)
        ratio = b / a if isinstance(a, int | float) and isinstance(b, int | float) and a else None
        lines.append(f"| {key} | {number(a)} | {number(b)} | {number(ratio, 3)} |")
    table = "\n".join(lines)
    if output_dir is not None:
        output = Path(output_dir)
        output.mkdir(parents=True, exist_ok=True)
        plots.latency_cdfs({name_a: run_a.records, name_b: run_b.records}, output / "comparison_cdfs.png")
        plots.fluidity_curve({name_a: run_a.metrics, name_b: run_b.metrics}, None, output / "comparison_fluidity.png")
        (output / "comparison.md").write_text(
            f"# {name_a} vs {name_b}\n\n{table}\n\n![CDFs](comparison_cdfs.png)\n\n"
            "![fluidity curves](comparison_fluidity.png)\n"
        )
    return table
