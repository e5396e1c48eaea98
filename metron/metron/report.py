"""A one-page Markdown report of a run directory, with its plots beside it."""

from pathlib import Path

import msgspec

from metron import plots
from metron.deadlines import DeadlineConfig
from metron.run_format import Run, read_run
from metron.slo import SloConfig

REPORT_FILE = "report.md"

HEADLINE = (
    ("ttft_s", "TTFT", "s"),
    ("tbt_s", "TBT", "s"),
    ("tpot_s", "TPOT", "s"),
    ("e2e_s", "end-to-end latency", "s"),
    ("normalized_latency_s", "normalized latency", "s/token"),
    ("scheduling_delay_s", "scheduling delay", "s"),
    # Rather than fluidity-index, whose P99 is the best requests' (higher is better): every row's
    # tail is its worst.
    ("miss_rate", "deadline miss rate (1 - fluidity-index)", ""),
    ("min_tbt_deadline_s", "minimum TBT deadline met", "s"),
)


def number(value: object, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return f"{value:.{digits}g}"


def describe_target(target: dict[str, object]) -> str:
    """One line for a target's recorded `describe()`: an OpenAI-compatible server, the engine or
    a simulated deployment."""
    match target.get("target") or target.get("kind"):
        case "engine":
            return f"engine at {target.get('host')}:{target.get('port')}"
        case "vidur":
            deployment = target.get("deployment")
            if isinstance(deployment, dict):
                return (
                    f"vidur simulation of {deployment.get('model')} on {deployment.get('num_gpus')} x "
                    f"{deployment.get('gpu')}"
                )
            return "vidur simulation"
        case kind:
            return f"{kind} {target.get('url')}, model {target.get('model')}, endpoint {target.get('endpoint')}"


def describe_arrivals(arrivals: dict[str, object]) -> str:
    """Only the settings the arrival kind uses."""
    match arrivals.get("kind"):
        case "poisson":
            return f"poisson at {arrivals.get('rate')} req/s"
        case "constant":
            return f"constant at {arrivals.get('rate')} req/s"
        case "gamma":
            return f"gamma at {arrivals.get('rate')} req/s, cv {arrivals.get('cv')}"
        case "trace":
            return f"trace {arrivals.get('trace_path')} at {arrivals.get('rate_scale')}x"
        case kind:
            return str(kind)


def _target_and_settings(config: dict[str, object]) -> tuple[object, object]:
    """A metron run records its target's `describe()` and its `run` settings; a run `vidur
    simulate` wrote records `target` "vidur" with its deployment, workload, deadlines and SLO
    beside it."""
    if config.get("target") == "vidur":
        return {"target": "vidur", "deployment": config.get("deployment")}, config
    return config.get("target"), config.get("run")


def _settings(run: Run) -> list[str]:
    config = run.config
    lines = []
    target, settings = _target_and_settings(config)
    if isinstance(target, dict):
        lines.append(f"- target: {describe_target(target)}")
    elif "simulator" in config:
        lines.append(f"- simulated by {config['simulator']}")
    if isinstance(settings, dict):
        workload = settings.get("workload", {})
        arrivals, lengths = workload.get("arrivals", {}), workload.get("lengths", {})
        lines.append(
            f"- workload: {workload.get('num_requests')} requests (+{workload.get('num_warmup_requests')} warm-up), "
            f"seed {workload.get('seed')}; arrivals {describe_arrivals(arrivals)}; lengths {lengths.get('kind')}"
        )
        deadlines = settings.get("deadlines", {})
        ttft = "prefill model + " + str(deadlines.get("ttft_slack_s")) if deadlines.get("prefill") else None
        lines.append(
            f"- deadlines: D_d = {deadlines.get('tbt_s')} s, D_p = {ttft or str(deadlines.get('ttft_s')) + ' s'}"
        )
        try:
            slo = msgspec.convert(settings.get("slo", {}), SloConfig).describe()
        except (msgspec.ValidationError, ValueError):
            slo = "unreadable"
        lines.append(f"- SLO: {slo}")
    if config.get("open_loop") is False:
        limit = (settings or {}).get("load", {}).get("max_concurrency") if isinstance(settings, dict) else None
        lines.append(f"- **closed loop**: at most {limit} requests in flight; arrivals waited for a free slot")
    if config.get("prompt_lengths_exact") is False:
        lines.append("- prompt lengths are approximate (no tokenizer was given)")
    if config.get("interrupted"):
        lines.append("- **interrupted**: the run was stopped early; figures cover what was measured")
    if config.get("cut_at_max_seconds"):
        load = settings.get("load", {}) if isinstance(settings, dict) else {}
        lines.append(
            f"- **cut at --max-seconds {load.get('max_seconds')}**: requests in flight were aborted (counted as "
            "interrupted), those not yet sent were left out; figures cover what was measured"
        )
    return lines


def _fluid_miss_rate(run: Run) -> float:
    """The miss rate at which the run's minimum TBT deadlines were found."""
    settings = run.config.get("run")
    deadlines = settings.get("deadlines") if isinstance(settings, dict) else None
    if not isinstance(deadlines, dict):  # a simulated run records its deadlines at the top
        deadlines = run.config.get("deadlines")
    value = deadlines.get("target_miss_rate") if isinstance(deadlines, dict) else None
    return float(value) if isinstance(value, int | float) else DeadlineConfig().target_miss_rate


def _prefix_cache_row(metrics: dict[str, object]) -> list[str]:
    """The prefix cache's hit rate, where the server (or the simulator) reported cached tokens."""
    fraction = metrics.get("cached_prompt_fraction")
    if fraction is None:
        return []
    return [f"| prefix cache hit rate (cached / prompt tokens) | {number(fraction)} |"]


def write_report(directory: str | Path, title: str | None = None) -> Path:
    """Writes `report.md` and its PNG plots into the run directory; returns the report's path."""
    run = read_run(directory)
    directory = run.directory
    metrics = run.metrics
    records = run.records
    deadlines = {r.tbt_deadline_s for r in records}
    plots.latency_cdfs({"run": records}, directory / "latency_cdfs.png")
    plots.fluidity_curve({"run": metrics}, deadlines.pop() if len(deadlines) == 1 else None, directory / "fluidity.png")
    plots.tokens_over_time(records, directory / "tokens_over_time.png")

    lines = [f"# {title or 'metron run: ' + directory.name}", ""]
    lines += _settings(run)
    slo = run.slo
    if isinstance(slo, dict):
        checks = ", ".join(
            f"{c['key']} {number(c['value'])} {'<=' if c['passed'] else '>'} {number(c['limit'])}"
            for c in slo.get("checks", [])
        )
        lines.append(f"- SLO verdict: **{'PASS' if slo.get('passed') else 'FAIL'}** ({checks})")
    lines += [
        "",
        f"{metrics.get('num_requests')} requests: {metrics.get('num_finished')} finished, "
        f"{metrics.get('num_ended_early')} ended early (fewer tokens than asked), {metrics.get('num_errors')} failed, "
        f"{metrics.get('num_interrupted')} interrupted; error rate {number(metrics.get('error_rate'))}.",
        "",
        "| metric | mean | P50 | P90 | P99 | max |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for key, label, unit in HEADLINE:
        cells = " | ".join(number(metrics.get(f"{key}.{stat}")) for stat in ("mean", "p50", "p90", "p99", "max"))
        lines.append(f"| {label}{f' ({unit})' if unit else ''} | {cells} |")
    worst = {stat: metrics.get(f"miss_rate.{stat}") for stat in ("p90", "p99")}
    tail = {stat: 1 - value if isinstance(value, int | float) else None for stat, value in worst.items()}
    lines += [
        "",
        f"fluidity-index: mean {number(metrics.get('fluidity_index.mean'))}, P10 {number(tail['p90'])}, "
        f"P1 {number(tail['p99'])} (the worst requests); service miss rate "
        f"{number(metrics.get('service_miss_rate'))} (all deadlines missed / all deadlines).",
        "",
        "| rate | value |",
        "| --- | --- |",
        f"| request throughput (req/s) | {number(metrics.get('request_throughput_per_s'))} |",
        f"| output token throughput (tokens/s) | {number(metrics.get('output_token_throughput_per_s'))} |",
        f"| total token throughput (tokens/s) | {number(metrics.get('total_token_throughput_per_s'))} |",
        f"| goodput (req/s meeting the SLO) | {number(metrics.get('goodput_per_s'))} |",
        *_prefix_cache_row(metrics),
        f"| fluid token generation rate (tokens/s) | {number(metrics.get('fluid_token_rate_per_s'))} |",
        f"| 1 / mean TPOT (tokens/s) | {number(metrics.get('tpot_token_rate_per_s'))} |",
        f"| 1 / P99 TBT (tokens/s) | {number(metrics.get('p99_tbt_token_rate_per_s'))} |",
        f"| P99 send lag (s) | {number(metrics.get('send_lag_s.p99'))} |",
        "",
        f"The fluid token rate is what 99% of requests sustain with at most {_fluid_miss_rate(run):.0%} of deadlines "
        "missed; TPOT-based rates average stalls away.",
        "",
        "![latency CDFs](latency_cdfs.png)",
        "",
        "![fluidity curve](fluidity.png) ![tokens over time](tokens_over_time.png)",
        "",
    ]
    path = directory / REPORT_FILE
    path.write_text("\n".join(lines))
    return path
