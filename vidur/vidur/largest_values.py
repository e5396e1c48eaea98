"""The largest values of each column of a table given a block of rows at a time: enough of them
for a high percentile of each column, exactly numpy's, without holding the table (the decode
miss-rate table of a long run, whose curve is each deadline's P99)."""

import numpy as np


class LargestValues:
    """Of each column of a table given a block of rows at a time, its `keep` largest values
    (pruned to them whenever more than `prune_above` rows are held)."""

    def __init__(self, keep: int, prune_above: int | None = None) -> None:
        self.keep = keep
        self.prune_above = 2 * keep + (1 << 16) if prune_above is None else prune_above
        self.blocks: list[np.ndarray] = []
        self.num_rows = 0  # held
        self.num_added = 0

    def add(self, rows: np.ndarray) -> None:
        self.blocks.append(rows)
        self.num_rows += len(rows)
        self.num_added += len(rows)
        if self.num_rows > self.prune_above:
            self._prune()

    def _prune(self) -> None:
        if not self.blocks:
            return
        stacked = np.concatenate(self.blocks)
        if len(stacked) > self.keep:
            stacked = np.partition(stacked, len(stacked) - self.keep, axis=0)[len(stacked) - self.keep :]
        self.blocks, self.num_rows = [stacked], len(stacked)

    def percentile(self, num_values: int, q: float) -> list[float]:
        """Per column, `np.percentile` of all `num_values` values given at `q`, with the values
        not kept read as -inf: exact while `keep` covers the two order statistics the linear
        method interpolates between (those at and above rank floor(q/100 (n-1)))."""
        self._prune()
        largest = np.sort(self.blocks[0], axis=0)
        padded = np.full(num_values, -np.inf)
        figures = []
        for j in range(largest.shape[1]):
            padded[num_values - len(largest) :] = largest[:, j]
            figures.append(float(np.percentile(padded, q)))
        return figures


def values_to_keep(num_values: int, q: float) -> int:
    """How many of the largest values `LargestValues` keeps for an exact `q` percentile of
    `num_values`: those from q's rank on (the two the linear method reads), and two more."""
    return min(num_values, num_values - int(q / 100 * (num_values - 1)) + 2)
