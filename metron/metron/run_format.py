"""The shared run directory (DESIGN.md) that metron and vidur both write, and every report reads.

    DIR/requests.jsonl   one `RequestRecord` per line (warm-up requests included, flagged)
    DIR/summary.json     {"format": "servekit-run/1", "config": {...}, "metrics": {...}, "slo": {...} | null}
    DIR/summary.csv      key,value: the metrics (lists as JSON)
    DIR/requests.csv     the scalar fields of each record

`metrics` is `metron.summary.summarize(...)`: flat keys, distributions as `name.p50`-style keys.
`config` is whatever the writer ran with (workload, target or deployment, deadlines, SLO), as JSON.
Files are written to a temporary name and renamed, so a reader never sees half a file.

A simulator writes a run with:

    records = request_records(measured, deadlines)
    write_run(out_dir, records, summarize(records, slo), config={"simulator": ..., "workload": ...})
"""

import csv
import io
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import msgspec

from metron.metrics import RequestRecord
from metron.slo import SloVerdict
from metron.summary import Metrics

FORMAT = "servekit-run/1"
REQUESTS_FILE = "requests.jsonl"
SUMMARY_FILE = "summary.json"
SUMMARY_CSV = "summary.csv"
REQUESTS_CSV = "requests.csv"
REQUEST_CSV_COLUMNS = (
    "id",
    "arrival_s",
    "scheduled_arrival_s",
    "prompt_tokens",
    "requested_prompt_tokens",
    "output_tokens",
    "requested_output_tokens",
    "ttft_s",
    "tpot_s",
    "e2e_s",
    "normalized_latency_s",
    "scheduling_delay_s",
    "fluidity_index",
    "missed_deadlines",
    "total_deadlines",
    "min_tbt_deadline_s",
    "outcome",
    "error",
    "warmup",
)


class Run(msgspec.Struct, frozen=True):
    directory: Path
    config: dict[str, object]
    metrics: dict[str, object]
    slo: dict[str, object] | None
    records: list[RequestRecord]


def _write_atomically(path: Path, data: bytes | bytearray) -> None:
    temporary = path.with_name(f".{path.name}.partial")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def write_run(
    directory: str | Path,
    records: Sequence[RequestRecord],
    metrics: Metrics,
    config: object,
    slo: SloVerdict | None = None,
) -> Path:
    """Writes the run to `directory` (created if missing); returns its path. `config` is any
    value msgspec can turn into JSON (a Struct, a dict of them)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    encoder = msgspec.json.Encoder()
    lines = bytearray()
    for record in records:
        encoder.encode_into(record, lines, -1)
        lines += b"\n"
    _write_atomically(directory / REQUESTS_FILE, lines)
    write_run_summary(directory, metrics, config, slo)

    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(REQUEST_CSV_COLUMNS)
    for record in records:
        row = [getattr(record, column) for column in REQUEST_CSV_COLUMNS]
        writer.writerow(["" if value is None else value for value in row])
    _write_atomically(directory / REQUESTS_CSV, table.getvalue().encode())
    return directory


def write_run_summary(directory: Path, metrics: Metrics, config: object, slo: SloVerdict | None = None) -> None:
    """summary.json and summary.csv of a run, for a writer that writes its request files itself
    (vidur writes a simulated run's from its columns)."""
    summary = {"format": FORMAT, "config": msgspec.to_builtins(config), "metrics": metrics, "slo": slo}
    _write_atomically(directory / SUMMARY_FILE, msgspec.json.format(msgspec.json.encode(summary), indent=2) + b"\n")

    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(["key", "value"])
    for key, value in metrics.items():
        writer.writerow([key, json.dumps(value) if isinstance(value, list) else ("" if value is None else value)])
    _write_atomically(directory / SUMMARY_CSV, table.getvalue().encode())


def read_summary(directory: str | Path) -> dict[str, object]:
    """summary.json of a run directory, checked to be this format."""
    path = Path(directory) / SUMMARY_FILE
    if not path.is_file():
        raise ValueError(f"{directory} is not a run directory: {SUMMARY_FILE} is missing")
    try:
        summary = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(summary, Mapping) or summary.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} summary")
    return dict(summary)


def read_records(directory: str | Path) -> list[RequestRecord]:
    path = Path(directory) / REQUESTS_FILE
    if not path.is_file():
        raise ValueError(f"{directory} is not a run directory: {REQUESTS_FILE} is missing")
    decoder = msgspec.json.Decoder(RequestRecord)
    records = []
    with path.open("rb") as file:
        for number, line in enumerate(file, start=1):
            if line.strip():
                try:
                    records.append(decoder.decode(line))
                except msgspec.ValidationError as error:
                    raise ValueError(f"{path}, line {number}: {error}") from error
    return records


def read_run(directory: str | Path) -> Run:
    summary = read_summary(directory)
    return Run(
        directory=Path(directory),
        config=dict(summary.get("config") or {}),
        metrics=dict(summary.get("metrics") or {}),
        slo=summary.get("slo"),  # type: ignore[arg-type]
        records=read_records(directory),
    )
