"""A simulated run's files written from its columns are the files metron writes from its records."""

from pathlib import Path

import msgspec
from metron.deadlines import DeadlineConfig
from metron.run_format import write_run
from metron.slo import SloConfig, evaluate_slo
from metron.summary import summarize

from vidur import SimulationResult, write_simulated_run

REQUEST_FILES = ("requests.jsonl", "summary.json", "summary.csv", "requests.csv")


def assert_files_are_metrons(result: SimulationResult, directory: Path, deadlines: DeadlineConfig, slo: SloConfig) -> None:
    """Writes `result` into `directory/columns` as vidur does and into `directory/records` as
    metron does, and checks the per-request and summary files byte for byte."""
    write_simulated_run(result, directory / "columns", deadlines=deadlines, slo=slo, plots=False)
    records = result.records(deadlines)
    metrics = summarize(records, slo)
    config = {
        "target": "vidur",
        "deployment": result.deployment.describe(),
        "workload": None,
        "deadlines": msgspec.to_builtins(deadlines),
        "slo": msgspec.to_builtins(slo),
    }
    write_run(directory / "records", records, metrics, config, evaluate_slo(metrics, slo))
    for name in REQUEST_FILES:
        assert (directory / "columns" / name).read_bytes() == (directory / "records" / name).read_bytes(), name
