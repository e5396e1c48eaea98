"""The summary of a profile's levels side by side: sweep.json, sweep.md and two plots.

    OUT/sweep.json    {"profile": {...}, "levels": [LevelSummary, ...]} in run order
    OUT/sweep.md      a table of the levels, with links to each level's report
    OUT/report.html   the same table and both plots in one self-contained page
    OUT/sweep_latencies.png, OUT/sweep_throughput.png   against rate or concurrency
"""

from collections.abc import Mapping, Sequence
from pathlib import Path

import msgspec

from metron import html_page, plots
from metron.profiles import Level, ProfileConfig
from metron.report import number

SWEEP_FILE = "sweep.json"
SWEEP_REPORT = "sweep.md"
HTML_REPORT = "report.html"
LATENCY_PLOT = "sweep_latencies.png"
THROUGHPUT_PLOT = "sweep_throughput.png"

TABLE_HEADERS = (
    "level", "rate (req/s)", "concurrency", "finished", "req/s", "output tokens/s", "TTFT P50", "TTFT P99",
    "TBT P50", "TBT P99", "norm. latency P50", "norm. latency P99",
)  # fmt: skip
UNITS = "Latencies in seconds (normalized latency: s per output token)."

LATENCIES = (("ttft_s", "TTFT (s)"), ("tbt_s", "TBT (s)"), ("normalized_latency_s", "normalized latency (s/token)"))


class LevelSummary(msgspec.Struct, frozen=True, kw_only=True):
    """One level's headline figures; `directory` is its run directory, relative to the output
    directory. `cut_at_max_seconds`: --max-seconds ended the run before all its requests."""

    name: str
    profile: str
    rate: float | None
    concurrency: int | None
    directory: str
    num_finished: int
    cut_at_max_seconds: bool
    request_throughput_per_s: float | None
    output_token_throughput_per_s: float | None
    latencies: dict[str, float | None]
    """`ttft_s.p50`, `ttft_s.p99`, `tbt_s.p50`, ... `normalized_latency_s.p99`."""


def summarize_level(level: Level, directory: str, metrics: Mapping[str, object], cut: bool) -> LevelSummary:
    def figure(key: str) -> float | None:
        value = metrics.get(key)
        return float(value) if isinstance(value, int | float) else None

    finished = metrics.get("num_finished")
    return LevelSummary(
        name=level.name,
        profile=level.profile,
        rate=level.rate,
        concurrency=level.concurrency,
        directory=directory,
        num_finished=finished if isinstance(finished, int) else 0,
        cut_at_max_seconds=cut,
        request_throughput_per_s=figure("request_throughput_per_s"),
        output_token_throughput_per_s=figure("output_token_throughput_per_s"),
        latencies={f"{name}.{stat}": figure(f"{name}.{stat}") for name, _ in LATENCIES for stat in ("p50", "p99")},
    )


def load_axis(profile: ProfileConfig, levels: Sequence[LevelSummary]) -> tuple[str, list[float | None]]:
    """What the plots put on x: the concurrency of a concurrent profile, else the request rate
    (the requested one, or the measured one where the target set it: synchronous, throughput)."""
    if profile.kind == "concurrent":
        return "concurrency (requests in flight)", [float(level.concurrency or 0) for level in levels]
    return "request rate (req/s)", [level.rate or level.request_throughput_per_s for level in levels]


def write_sweep(output_dir: Path, profile: ProfileConfig, levels: Sequence[LevelSummary]) -> Path:
    """Writes sweep.json, sweep.md, report.html and the plots; returns sweep.md's path."""
    encoded = msgspec.json.encode({"profile": profile, "levels": levels})
    (output_dir / SWEEP_FILE).write_bytes(msgspec.json.format(encoded, indent=2) + b"\n")
    label, xs = load_axis(profile, levels)
    plotted = [(x, level) for x, level in zip(xs, levels, strict=True) if x is not None]
    curves = {
        title: {
            stat.upper(): [level.latencies[f"{name}.{stat}"] for _, level in plotted] for stat in ("p50", "p99")
        }
        for name, title in LATENCIES
    }
    points = [x for x, _ in plotted]
    plots.against_load(points, curves, label, output_dir / LATENCY_PLOT)
    rates = {
        "request throughput (req/s)": {"measured": [lv.request_throughput_per_s for _, lv in plotted]},
        "output token throughput (tokens/s)": {"measured": [lv.output_token_throughput_per_s for _, lv in plotted]},
    }
    plots.against_load(points, rates, label, output_dir / THROUGHPUT_PLOT)

    title = f"metron benchmark: profile {profile.kind}"
    lines = [f"# {title}", "", "| " + " | ".join(TABLE_HEADERS) + " |", "| --- " * len(TABLE_HEADERS) + "|"]
    for level in levels:
        report = f"[{level.name}]({level.directory}/report.md){_cut(level)}"
        lines.append(f"| {report} | " + " | ".join(_figures(level)) + " |")
    lines += ["", UNITS, ""]
    lines += [f"![latency percentiles]({LATENCY_PLOT})", "", f"![throughput]({THROUGHPUT_PLOT})", ""]
    path = output_dir / SWEEP_REPORT
    path.write_text("\n".join(lines))
    rows: list[list[html_page.Cell]] = [
        [html_page.Link(level.name + _cut(level), f"{level.directory}/report.md"), *_figures(level)] for level in levels
    ]
    html_page.write_page(
        output_dir / HTML_REPORT,
        title,
        [
            html_page.table(TABLE_HEADERS, rows),
            html_page.paragraph(UNITS),
            html_page.image(output_dir / LATENCY_PLOT, "latency percentiles against load"),
            html_page.image(output_dir / THROUGHPUT_PLOT, "throughput against load"),
        ],
    )
    return path



def _cut(level: LevelSummary) -> str:
    return " (cut at --max-seconds)" if level.cut_at_max_seconds else ""


def _figures(level: LevelSummary) -> list[str]:
    """A level's cells after its name."""
    return [
        number(level.rate),
        number(level.concurrency),
        str(level.num_finished),
        number(level.request_throughput_per_s),
        number(level.output_token_throughput_per_s),
        *(number(value) for value in level.latencies.values()),
    ]
