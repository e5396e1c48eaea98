"""`vidur validate`: the simulator against this project's engine, on the same machine.

1. Profile the engine's device at the engine's sizes (`engine_profile`), before the engine starts.
2. Start the engine (`engine_process`, writing its iteration log), or use a running one.
3. Calibrate: send the workload's requests all at once. Their throughput is the engine's
   capacity; their iterations fit `[cpu_overheads]` (`vidur.overheads_fit`).
4. At each load (fractions of that capacity, Poisson arrivals), run the workload through metron's
   engine target, then simulate exactly the requests sent (their send times, the prompt lengths the
   engine counted, their output lengths) on the engine's twin (`engine_deployment`): the same
   scheduler config, KV blocks and device profile, the fitted overheads.
5. Report, per load, the simulator's error on P50/P95 normalized latency, TTFT, TBT and
   throughput, metron's comparison table, and the iteration-level comparison
   (`iteration_comparison`).
"""

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
from metron.compare import compare_runs
from metron.deadlines import DeadlineConfig
from metron.metrics import RequestRecord
from metron.run_format import write_run
from metron.targets.engine import parse_address
from metron.workload import WorkloadConfig

from vidur.api import train_predictor
from vidur.deployment import plan_deployment
from vidur.gpus import profiling_root_of
from vidur.output import write_simulated_run
from vidur.overheads_fit import fit_overheads
from vidur.simulation import Simulator, Workload
from vidur.validate_engine.engine_deployment import engine_deployment_config
from vidur.validate_engine.engine_process import check_engine_args, running_engine
from vidur.validate_engine.engine_profile import engine_knobs, profile_device
from vidur.validate_engine.iteration_comparison import compare_batches, engine_shapes, simulated_shapes, time_by_shape
from vidur.validate_engine.load_runs import MeasuredLoad, burst, run_load, throughput_qps

REPORT_FILE = "validation.json"
LOG_SETTLE_S = 5.0


@dataclass(frozen=True, slots=True)
class ValidateConfig:
    """Either `engine_args` (validate starts `python -m engine` with them) or `address` (an
    engine already running, HOST:PORT of its RPC) with its `iteration_log` path and the
    `device_folder` of its device's profile. `device_folder` given with `engine_args` skips
    profiling."""

    workload: WorkloadConfig
    output_dir: Path
    engine_args: tuple[str, ...] = ()
    address: str | None = None
    iteration_log: Path | None = None
    device_folder: Path | None = None
    loads: tuple[float, ...] = (0.25, 0.5, 0.85)
    profile_repeats: int = 10
    deadlines: DeadlineConfig = field(default_factory=DeadlineConfig)

    def __post_init__(self) -> None:
        if not self.loads or not all(0 < load for load in self.loads):
            raise ValueError(f"loads must be positive fractions of the capacity, got {self.loads}")
        if self.address is not None:
            parse_address(self.address)
            if self.engine_args:
                raise ValueError("give the engine's arguments or a running engine's address, not both")
            if self.iteration_log is None or self.device_folder is None:
                raise ValueError(
                    "a running engine needs --iteration-log (the file its --iteration-log writes) and --device "
                    "(its device's profile folder, from vidur profile)"
                )
        else:
            check_engine_args(self.engine_args)


def _metrics(records: Sequence[RequestRecord], window_s: float) -> dict[str, float]:
    """Latencies in seconds, throughputs per second."""

    def values(name: str) -> list[float]:
        return [getattr(r, name) for r in records if getattr(r, name) is not None]

    gaps = [gap for r in records for gap in r.tbt_s]
    figures = {}
    for name, data in (("normalized_latency", values("normalized_latency_s")), ("ttft", values("ttft_s")),
                       ("tbt", gaps)):
        figures[f"{name}_p50"] = float(np.percentile(data, 50))
        figures[f"{name}_p95"] = float(np.percentile(data, 95))
    figures["request_throughput"] = len(records) / window_s
    figures["output_token_throughput"] = sum(len(r.token_times_s) for r in records) / window_s
    return figures


def _span_s(records: Sequence[RequestRecord]) -> float:
    return max(r.token_times_s[-1] for r in records) - min(r.arrival_s for r in records)


def _replayed(records: Sequence[RequestRecord]) -> Workload:
    """The requests as the engine got them: send times, its prompt counts, the outputs asked for."""
    ordered = sorted(records, key=lambda r: (r.arrival_s, r.id))
    return Workload(
        ids=np.array([r.id for r in ordered], dtype=np.int64),
        arrival_s=np.array([r.arrival_s for r in ordered], dtype=np.float64),
        prompt_tokens=np.array([r.prompt_tokens for r in ordered], dtype=np.int64),
        output_tokens=np.array([r.requested_output_tokens or r.output_tokens for r in ordered], dtype=np.int64),
        warmup=np.array([r.warmup for r in ordered], dtype=bool),
    )


def _window(records: Sequence[Any], load: MeasuredLoad) -> list[Any]:
    return [r for r in records if load.wall_start <= r.scheduled_at <= load.wall_end]


def _read_log_settled(path: Path, expected_after: float) -> tuple[Any, list[Any]]:
    """The log once the engine has flushed the iterations up to `expected_after` (it flushes when
    it goes idle)."""
    from engine.core.iteration_log import read_iteration_log

    deadline = time.monotonic() + LOG_SETTLE_S
    while True:
        header, records = read_iteration_log(path)
        if (records and records[-1].completed_at >= expected_after) or time.monotonic() > deadline:
            return header, records
        time.sleep(0.05)


@dataclass(slots=True)
class _Measured:
    calibration: MeasuredLoad
    capacity_qps: float
    loads: list[tuple[float, MeasuredLoad]]


def _measure(config: ValidateConfig, host: str, port: int, tokenizer: Path | None) -> _Measured:
    calibration_workload = msgspec.structs.replace(burst(config.workload), seed=config.workload.seed + 1)
    calibration = run_load(calibration_workload, host, port, tokenizer, config.deadlines)
    capacity = throughput_qps(calibration)
    loads = []
    for fraction in config.loads:
        workload = config.workload.with_rate(fraction * capacity)
        loads.append((fraction, run_load(workload, host, port, tokenizer, config.deadlines)))
    return _Measured(calibration, capacity, loads)


def validate(config: ValidateConfig) -> dict[str, Any]:
    """Runs the whole validation; writes the report and every run under `output_dir`."""
    output = config.output_dir
    output.mkdir(parents=True, exist_ok=True)
    if config.address is None:
        knobs = engine_knobs(config.engine_args)
        device_folder = config.device_folder or profile_device(knobs, output / "profile", config.profile_repeats)
        log_path = output / "engine_iterations.jsonl"
        with running_engine(config.engine_args, log_path) as engine:
            measured = _measure(config, engine.host, engine.rpc_port, knobs.model_dir / "tokenizer.json")
            header, log = _read_log_settled(log_path, measured.loads[-1][1].wall_end - 1.0)
    else:
        host, port = parse_address(config.address)
        assert config.iteration_log is not None and config.device_folder is not None
        device_folder, log_path = config.device_folder, config.iteration_log
        from engine.core.iteration_log import read_iteration_log

        header, _ = read_iteration_log(log_path)
        measured = _measure(config, host, port, Path(header.model) / "tokenizer.json")
        header, log = _read_log_settled(log_path, measured.loads[-1][1].wall_end - 1.0)

    calibration_log = _window(log, measured.calibration)
    overheads = fit_overheads(calibration_log)
    deployment_config = engine_deployment_config(header, device_folder, overheads.config)
    predictor = train_predictor([profiling_root_of(device_folder)])
    simulator = Simulator(plan_deployment(deployment_config, predictor))
    report: dict[str, Any] = {
        "engine": {"model": header.model, "device": header.device, "dtype": header.dtype,
                   "attention_backend": header.attention_backend, "scheduler": header.scheduler,
                   "num_kv_blocks": header.num_kv_blocks},
        "device_folder": str(device_folder),
        "capacity_qps": measured.capacity_qps,
        "cpu_overheads": overheads.toml(),
        "calibration_iterations": time_by_shape(calibration_log, simulator.cost_model),
        "loads": [],
    }
    for fraction, load in measured.loads:
        report["loads"].append(
            _compare_load(fraction, fraction * measured.capacity_qps, load, _window(log, load), simulator, config,
                          output / f"load_{fraction:g}")
        )
    (output / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    (output / "validation.md").write_text(markdown_report(report))
    return report


def _compare_load(
    fraction: float, qps: float, load: MeasuredLoad, log: list[Any], simulator: Simulator, config: ValidateConfig,
    directory: Path,
) -> dict[str, Any]:
    records = load.records
    result = simulator.run(_replayed(records))
    engine_dir, vidur_dir = directory / "engine", directory / "vidur"
    write_run(engine_dir, records, load.outcome.metrics, load.outcome.config)
    scored = write_simulated_run(result, vidur_dir, deadlines=config.deadlines, workload_config=config.workload,
                                 plots=False)
    engine_figures = _metrics(records, _span_s(records))
    vidur_figures = _metrics(scored.records, _span_s(scored.records))
    errors = {name: (vidur_figures[name] - value) / value for name, value in engine_figures.items() if value}
    return {
        "load": fraction,
        "qps": qps,
        "num_requests": len(records),
        "engine": engine_figures,
        "vidur": vidur_figures,
        "errors": errors,
        "compare_table": compare_runs(engine_dir, vidur_dir),
        "batches": compare_batches(engine_shapes(log), simulated_shapes(result.iterations)),
        "iteration_times": time_by_shape(log, simulator.cost_model),
    }


def markdown_report(report: dict[str, Any]) -> str:
    lines = [
        "# vidur validate: the simulator against the engine",
        "",
        f"Engine: `{report['engine']['model']}` on {report['engine']['device']} ({report['engine']['dtype']}, "
        f"{report['engine']['attention_backend']} attention), capacity {report['capacity_qps']:.3g} requests/s.",
        "",
        "Fitted host overheads (seconds, seconds per sequence):",
        "",
        "```toml",
        report["cpu_overheads"].rstrip(),
        "```",
        "",
        "| load | requests | metric | engine | vidur | error |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for load in report["loads"]:
        for name, value in load["engine"].items():
            simulated = load["vidur"][name]
            error = load["errors"].get(name)
            lines.append(
                f"| {load['load']:.0%} | {load['num_requests']} | {name} | {value:.4g} | {simulated:.4g} | "
                + (f"{error:+.1%} |" if error is not None else "- |")
            )
    for load in report["loads"]:
        batches = load["batches"]
        lines += [
            "",
            f"## Load {load['load']:.0%}",
            "",
            f"Batches: {batches['identical_leading_iterations']} of {batches['num_engine_iterations']} engine "
            f"iterations identical before the first difference; "
            + (f"{batches['fraction_identical_by_position']:.0%} identical by position."
               if batches["fraction_identical_by_position"] is not None else "none to compare."),
            "",
            "| batch shape | iterations | measured (median) | predicted (median) | MAPE |",
            "| --- | --- | --- | --- | --- |",
        ]
        for shape, row in load["iteration_times"]["by_shape"].items():
            lines.append(
                f"| {shape} | {row['num_iterations']} | {row['measured_median_s'] * 1e3:.3g} ms | "
                f"{row['predicted_median_s'] * 1e3:.3g} ms | {row['mape']:.1%} |"
            )
        lines += ["", "metron compare (A: engine, B: vidur):", "", load["compare_table"]]
    return "\n".join(lines) + "\n"
