"""Columns kept in files of raw little-endian values (a run's iteration records and token times
streamed to disk by the simulator, `Simulator.run(..., spill_directory=...)`), read as numpy
arrays. Each
lookup maps its file afresh, so a long run's columns take memory only while something reads
them, one at a time."""

from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np


def mapped_column(path: Path, dtype: np.dtype, length: int) -> np.ndarray:
    """The `length` values of `dtype` in file `path`, mapped read-only."""
    if length == 0:  # an empty file cannot be mapped
        return np.empty(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", shape=(length,))


class SpilledColumns(Mapping[str, np.ndarray]):
    """`columns`: (name, numpy dtype, path) of each, every file `num_rows` values long."""

    def __init__(self, num_rows: int, columns: list[tuple[str, str, Path]]) -> None:
        self.num_rows = num_rows
        self._columns = {name: (np.dtype(dtype), Path(path)) for name, dtype, path in columns}

    def __getitem__(self, name: str) -> np.ndarray:
        dtype, path = self._columns[name]
        return mapped_column(path, dtype, self.num_rows)

    def __iter__(self) -> Iterator[str]:
        return iter(self._columns)

    def __len__(self) -> int:
        return len(self._columns)
