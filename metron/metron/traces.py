"""Reading request traces: CSV files with one request per row (see ../shared/data/traces/)."""

import csv
import functools
from pathlib import Path

import numpy as np


@functools.lru_cache(maxsize=8)
def _read_columns(path: str, mtime_ns: int) -> dict[str, np.ndarray]:
    with open(path, newline="") as file:
        reader = csv.reader(file)
        try:
            header = next(reader)
        except StopIteration:
            raise ValueError(f"trace {path} is empty") from None
        rows = list(reader)
    if not rows:
        raise ValueError(f"trace {path} has a header but no rows")
    columns: dict[str, np.ndarray] = {}
    for index, name in enumerate(header):
        try:
            columns[name] = np.array([float(row[index]) for row in rows])
        except (ValueError, IndexError):
            continue  # a non-numeric column; asking for it gives a clear error below
    return columns


def read_trace_column(path: str | Path, column: str) -> np.ndarray:
    """The numeric column `column` of the CSV trace at `path`, as float64 (cached per file)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"trace file {path} does not exist")
    columns = _read_columns(str(path), path.stat().st_mtime_ns)
    if column not in columns:
        raise ValueError(f"trace {path} has no numeric column {column!r}; numeric columns: {sorted(columns)}")
    return columns[column]
