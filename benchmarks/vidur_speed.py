"""How fast vidur simulates, and how long its predictor takes to train.

Llama-2-7B on one H100 with `sarathi` (chunk 512) on `splitwise_conv.csv` replayed as recorded
(arrival times and lengths; a request longer than the 4,096-token context keeps its output and
has its prompt shortened, as Vidur does): 10,000 requests, the same at 3x the recorded rate,
100,000 requests (the trace tiled end to end), a 4-replica TP=4 deployment of Llama-2-70B at 4x
the rate, and how the cost grows with the number of requests. `wall_s` is the simulation itself
(the Rust event loop with the shared scheduler, per-token and per-iteration records, handed to
numpy); scoring with metron's metrics is timed separately (metron's per-request path, and
vidur's from the simulator's columns), and so is a capacity-search probe's SLO verdict: metron's
full scoring against the search's verdict from the columns (the same verdict,
`vidur/vidur/slo_check.py`). `whole_command_s` is `vidur simulate` of the 10,000 requests end to
end in a fresh process (the run format, iterations.csv, simulation.json and trace.json written,
plots off, the predictor from its cache), beside Vidur's own whole run of the same requests
(95 s, as measured for the issue that asked for this figure). Each figure is the median of a few
repeats (the machine is shared). `million_requests_s` and `million_requests_peak_rss_mib` are
`vidur simulate` of 1,000,000 requests on 16 replicas (Poisson arrivals at 120 requests/s,
`splitwise_code.csv` lengths; run format written, plots off) in a fresh process, once: its wall
time and the process's peak resident memory.
`vidur search` of 288 small deployments (100 requests a probe)
runs in the process pool and on a local Ray of as many CPUs as cores, from empty caches: points
per second each (the pool's figure includes starting its processes, Ray's does not: it is started
once, and its start-up is a figure of its own), and Ray's overhead per point: a task that ships
the point's job and returns it finished from the cache.

Usage: .venv/bin/python benchmarks/vidur_speed.py [--data-dir DIR]
The last line is one JSON object, for the 10,000-request run.
"""

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
from metron.deadlines import DeadlineConfig
from metron.lengths import LengthConfig, request_lengths
from metron.slo import SloConfig, evaluate_slo
from metron.summary import summarize
from metron.traces import read_trace_column
from metron.workload import WorkloadConfig

from vidur import (
    ClusterConfig,
    DeploymentConfig,
    OperatorPredictor,
    ReplicaConfig,
    ReplicaSchedulerConfig,
    Simulator,
    Workload,
    plan_deployment,
    score,
    simulated_prefill_model,
    train_predictor,
)
from vidur.config import SearchConfig, VidurConfig
from vidur.profiles import load_profiles
from vidur.search import on_ray
from vidur.search.cache import DiskCache
from vidur.search.runner import plan_search, run_search
from vidur.slo_check import slo_verdict
from vidur.validation import interpolation_error, roofline_transfer_error

REPEATS = 3
# Vidur (microsoft/vidur) simulating the same 10,000 requests, from its start to its outputs.
VIDUR_WHOLE_RUN_S = 95.0


def splitwise(trace: Path, num_requests: int, rate_scale: float, max_total_tokens: int) -> Workload:
    """The trace as recorded, tiled end to end when more requests are asked for than it has."""
    arrivals = read_trace_column(trace, "arrived_at")
    rows = np.arange(num_requests) % len(arrivals)
    laps = np.arange(num_requests) // len(arrivals)
    span = arrivals[-1] - arrivals[0] + (arrivals[-1] - arrivals[0]) / (len(arrivals) - 1)
    arrival_s = (arrivals[rows] - arrivals[0] + laps * span) / rate_scale
    lengths = LengthConfig(kind="trace", trace_path=str(trace), shuffle=False, max_total_tokens=max_total_tokens)
    prompt, output = request_lengths(lengths, num_requests, np.random.default_rng(0))
    return Workload(np.arange(num_requests), arrival_s, prompt, output, np.zeros(num_requests, dtype=bool))


def whole_command_s(data: Path) -> tuple[float, float]:
    """(whole command, simulation alone) of `vidur simulate` on the 10,000 requests, medians of
    fresh processes after one that fills the predictor cache."""
    with tempfile.TemporaryDirectory() as scratch:
        command = [sys.executable, "-m", "vidur.cli", "simulate", "--data-dir", str(data)]
        command += ["--trace", "splitwise_conv.csv", "--num-requests", "10000", "--set", "output.plots=false"]
        command += ["--output-dir", f"{scratch}/run", "--predictor-cache-dir", f"{scratch}/cache"]
        subprocess.run(command, check=True, capture_output=True)
        walls, simulations = [], []
        for _ in range(REPEATS):
            started = time.perf_counter()
            printed = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            walls.append(time.perf_counter() - started)
            simulations.append(float(printed.splitlines()[-1].split()[2]))  # "time: simulation X s, ..."
    return statistics.median(walls), statistics.median(simulations)


def search_speed(predictor: OperatorPredictor) -> dict[str, float]:
    """The process pool against a local Ray of the same cores, on the same space from empty
    caches, in turns; medians."""
    space = SearchConfig(
        gpus=("h100", "a100", "a40"),
        tensor_parallel=(1, 2, 4),
        pipeline_parallel=(1, 2),
        num_replicas=(1, 2),
        policies=("sarathi", "vllm"),
        token_budgets=(256, 512, 1024),
        max_num_seqs=(64, 128),
        initial_qps=4.0,
        max_qps=1024.0,
        precision=0.1,
    )
    config = VidurConfig(workload=WorkloadConfig(num_requests=100, lengths=LengthConfig(kind="uniform")), search=space)
    cores = os.cpu_count() or 1
    walls: dict[str, list[float]] = {"pool": [], "ray": []}
    points = {}
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        on_ray.connect(on_ray.LOCAL, cores)
        ray_start_s = time.perf_counter() - started
        try:
            for repeat in range(REPEATS):
                for kind, address in (("pool", None), ("ray", on_ray.LOCAL)):
                    cache = Path(scratch, f"{kind}-{repeat}")
                    started = time.perf_counter()
                    found = run_search(
                        config, predictor, cache_dir=cache, fingerprint="", workers=cores, progress=False,
                        ray_address=address,
                    )
                    walls[kind].append(time.perf_counter() - started)
                    points[kind] = [p.as_dict() for p in found]
            # What Ray adds to a point: every task ships its job and returns the point its worker
            # finds finished in the cache.
            finished = Path(scratch, f"ray-{REPEATS - 1}")
            jobs, _ = plan_search(config, space, predictor, finished, "")
            started = time.perf_counter()
            assert len(list(on_ray.map_on_ray(jobs, DiskCache(finished), on_ray.LOCAL, cores))) == len(jobs)
            ray_task_s = (time.perf_counter() - started) / len(jobs)
        finally:
            on_ray.disconnect()
    assert points["ray"] == points["pool"] and len(points["pool"]) >= 200
    num_points = len(points["pool"])
    pool_s, ray_s = statistics.median(walls["pool"]), statistics.median(walls["ray"])
    figures = {
        "search_points": num_points,
        "search_pool_points_per_s": round(num_points / pool_s, 2),
        "search_ray_points_per_s": round(num_points / ray_s, 2),
        "search_ray_start_s": round(ray_start_s, 2),
        "search_ray_overhead_per_point_ms": round(ray_task_s * 1e3, 2),
    }
    print(
        f"\nvidur search, {num_points} deployments from empty caches, {cores} cores (median of {REPEATS}): "
        f"process pool {pool_s:.1f} s ({figures['search_pool_points_per_s']} points/s), local Ray {ray_s:.1f} s "
        f"({figures['search_ray_points_per_s']} points/s) after its start-up of {ray_start_s:.1f} s, the same "
        f"points; Ray's overhead {figures['search_ray_overhead_per_point_ms']} ms per point (a task returning a "
        f"finished point), the searches' difference {(ray_s - pool_s) / num_points * 1e3:.1f} ms per point"
    )
    return figures


MILLION_RUN = ["--replicas", "16", "--qps", "120", "--set", "output.plots=false"]
MILLION_RUN += ["--set", "workload.lengths.kind=trace", "--set", "workload.lengths.trace_path=splitwise_code.csv"]


def long_run(data: Path, num_requests: int) -> tuple[float, float]:
    """(wall s, peak RSS MiB) of `vidur simulate` of `num_requests` on 16 replicas, in a fresh
    process after one that fills the predictor cache."""
    with tempfile.TemporaryDirectory() as scratch:
        command = [sys.executable, "-m", "vidur.cli", "simulate", "--data-dir", str(data)]
        command += ["--predictor-cache-dir", f"{scratch}/cache"]
        subprocess.run([*command, "--num-requests", "10"], check=True, capture_output=True)
        started = time.perf_counter()
        run = [*command, *MILLION_RUN, "--num-requests", str(num_requests), "--output-dir", f"{scratch}/run"]
        process = subprocess.Popen(run, stdout=subprocess.DEVNULL)
        peak_kib = 0
        while process.poll() is None:
            peak_kib = max(peak_kib, _peak_rss_kib(process.pid))
            time.sleep(0.02)
        wall_s = time.perf_counter() - started
        if process.returncode != 0:
            raise RuntimeError(f"the {num_requests}-request run failed with status {process.returncode}")
    return wall_s, peak_kib / 1024


def _peak_rss_kib(pid: int) -> int:
    """The process's peak resident memory so far (VmHWM, which its exec reset), 0 once it is
    gone. Not ru_maxrss: that also counts the memory of this process it was forked from."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def median_s(run: Callable[[], object]) -> float:
    walls = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        run()
        walls.append(time.perf_counter() - started)
    return statistics.median(walls)


def timed_runs(simulator: Simulator, workload: Workload) -> tuple[float, int, object]:
    walls = []
    result = None
    for _ in range(REPEATS):
        started = time.perf_counter()
        result = simulator.run(workload)
        walls.append(time.perf_counter() - started)
    assert result is not None
    return statistics.median(walls), result.num_iterations, result


def row(name: str, workload: Workload, simulator: Simulator) -> dict[str, float | int | str]:
    wall, iterations, result = timed_runs(simulator, workload)
    assert int(result.requests["num_tokens"].sum()) == int(workload.output_tokens.sum())  # type: ignore[attr-defined]
    figures = {
        "case": name,
        "requests": len(workload),
        "iterations": iterations,
        "wall_s": round(wall, 4),
        "iterations_per_s": round(iterations / wall),
        "us_per_iteration": round(wall / iterations * 1e6, 3),
        "us_per_request": round(wall / len(workload) * 1e6, 2),
    }
    print(
        f"{name:<44} {len(workload):>8} {iterations:>10} {wall:>9.3f} {figures['iterations_per_s']:>12,} "
        f"{figures['us_per_iteration']:>8.3f}"
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    data = Path(parser.parse_args().data_dir)
    trace = data / "traces" / "splitwise_conv.csv"

    train_times = []
    predictor: OperatorPredictor | None = None
    for _ in range(REPEATS):
        predictor = train_predictor([data / "profiling"])
        train_times.append(predictor.train_s)
    assert predictor is not None
    train_s = statistics.median(train_times)
    profiles = load_profiles([data / "profiling"])
    heldout = interpolation_error(profiles)
    transfer = roofline_transfer_error(profiles)
    print(f"predictor: trained on every public table in {train_s:.2f} s (median of {REPEATS})")
    print(
        f"  held-out MAPE, interpolation (every 4th token count held out): per layer {heldout.layer_mape:.2%} "
        f"over {heldout.num_layer_points} points; per operator "
        + ", ".join(f"{op} {err:.1%}" for op, err in heldout.operator_mape.items())
    )
    print(
        "  held-out MAPE, rooflines for unprofiled models (leave one model out), per layer: "
        + ", ".join(f"{gpu} {report.layer_mape:.1%}" for gpu, report in transfer.items())
    )

    base = DeploymentConfig(scheduler=ReplicaSchedulerConfig(policy="sarathi", token_budget=512))
    llama7b = Simulator(plan_deployment(base, predictor))
    big = replace(
        base,
        replica=ReplicaConfig(model="llama-2-70b", gpu="h100", tensor_parallel=4),
        cluster=ClusterConfig(num_replicas=4, router="least_outstanding"),
    )
    llama70b = Simulator(plan_deployment(big, predictor))

    print(f"\n{'case':<44} {'requests':>8} {'iterations':>10} {'wall (s)':>9} {'iterations/s':>12} {'us/iter':>8}")
    main_row = row("llama-2-7b h100 sarathi-512, as recorded", splitwise(trace, 10_000, 1.0, 4096), llama7b)
    row("  same at 3x the recorded rate", splitwise(trace, 10_000, 3.0, 4096), llama7b)
    row("  100,000 requests (trace tiled)", splitwise(trace, 100_000, 1.0, 4096), llama7b)
    row("llama-2-70b 4 replicas x h100 TP=4, 4x rate", splitwise(trace, 10_000, 4.0, 4096), llama70b)

    print("\ncost growth with requests (llama-2-7b, as recorded):")
    growth = [
        row(f"  {n:,} requests", splitwise(trace, n, 1.0, 4096), llama7b)
        for n in (1_000, 3_000, 10_000, 30_000, 100_000)
    ]
    per_request = [g["us_per_request"] for g in growth]
    print(f"  us per request: {per_request} (flat = linear growth)")

    workload = splitwise(trace, 10_000, 1.0, 4096)
    result = llama7b.run(workload)
    started = time.perf_counter()
    records = result.records(DeadlineConfig())
    metrics = summarize(records)
    scoring_s = time.perf_counter() - started
    column_scoring_s = median_s(lambda: score(result, DeadlineConfig()))
    assert score(result, DeadlineConfig()).metrics == metrics
    print(
        f"\nscoring the 10,000-request run with metron (records + summary): {scoring_s:.2f} s; from the "
        f"simulator's columns (the same figures): {column_scoring_s:.2f} s; "
        f"TTFT p50 {metrics['ttft_s.p50']:.3f} s, TBT p99 {metrics['tbt_s.p99']:.4f} s"
    )

    # A capacity-search probe: simulate, then decide pass/fail under each SLO kind.
    deadlines = DeadlineConfig(prefill=simulated_prefill_model(llama7b))
    print("\nsearch probe (10,000 requests, simulation without iteration records, then the SLO verdict):")
    probe_sim_s = median_s(lambda: llama7b.run(workload, record_iterations=False))
    print(f"  simulation {probe_sim_s:.3f} s")
    slo_kinds = {kind: SloConfig(kind=kind) for kind in ("deadline", "tbt_ttft", "ttft_tpot")}
    verdict_s = {}
    for kind, slo in slo_kinds.items():
        full = evaluate_slo(summarize(result.records(deadlines), slo), slo)
        assert slo_verdict(result, deadlines, slo) == full
        full_s = median_s(functools.partial(lambda s: evaluate_slo(summarize(result.records(deadlines), s), s), slo))
        verdict_s[kind] = median_s(functools.partial(slo_verdict, result, deadlines, slo))
        print(
            f"  {kind:<10} metron records + summary + verdict {full_s:.3f} s, verdict from columns "
            f"{verdict_s[kind]:.4f} s ({full_s / verdict_s[kind]:.0f}x); probe {probe_sim_s + full_s:.3f} s -> "
            f"{probe_sim_s + verdict_s[kind]:.3f} s"
        )
    whole_s, command_simulation_s = whole_command_s(data)
    print(
        f"\nvidur simulate, 10,000 requests, run written, plots off: {whole_s:.2f} s end to end "
        f"(the simulation {command_simulation_s:.3f} s of it); Vidur's whole run {VIDUR_WHOLE_RUN_S:.0f} s, "
        f"{VIDUR_WHOLE_RUN_S / whole_s:.0f}x"
    )
    search_figures = search_speed(predictor)
    tenth_s, tenth_rss_mib = long_run(data, 100_000)
    million_s, million_rss_mib = long_run(data, 1_000_000)
    # What each request adds to the peak, the fixed cost (interpreter, predictor) left out.
    rss_per_request = (million_rss_mib - tenth_rss_mib) * 2**20 / 900_000
    print(
        f"vidur simulate on 16 replicas, run written, plots off: 1,000,000 requests {million_s:.1f} s, "
        f"peak RSS {million_rss_mib:,.0f} MiB; 100,000 requests {tenth_s:.1f} s, {tenth_rss_mib:,.0f} MiB; "
        f"{rss_per_request:,.0f} bytes of peak memory per request"
    )
    print(
        json.dumps(
            {
                "requests": main_row["requests"],
                "iterations": main_row["iterations"],
                "wall_s": main_row["wall_s"],
                "iterations_per_s": main_row["iterations_per_s"],
                "train_s": round(train_s, 3),
                "predictor_heldout_mape": round(heldout.layer_mape, 4),
                "probe_simulation_s": round(probe_sim_s, 4),
                "probe_deadline_verdict_s": round(verdict_s["deadline"], 4),
                "column_scoring_s": round(column_scoring_s, 3),
                "whole_command_s": round(whole_s, 3),
                "whole_command_vs_vidur": round(VIDUR_WHOLE_RUN_S / whole_s, 1),
                "million_requests_s": round(million_s, 2),
                "million_requests_peak_rss_mib": round(million_rss_mib),
                "long_run_peak_rss_bytes_per_request": round(rss_per_request),
                **search_figures,
            }
        )
    )


if __name__ == "__main__":
    main()
