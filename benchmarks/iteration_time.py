"""The period of an engine iteration as a line in what it runs, fitted to an engine's iteration
log (`python -m engine --iteration-log`): how long a prefill chunk after a context of some length
takes beside the decodes in its batch, so a token budget can be fitted to a TBT target.

The features of an iteration: 1 (its fixed cost), prefill tokens, chunk-attention pairs (each
chunk's tokens x (the context before it + half the chunk): the query-key pairs it computes),
decodes, and the context tokens those decodes read. Fitted by non-negative least squares.
"""

import math
from collections.abc import Sequence

import msgspec
import numpy as np

from engine.core.iteration_log import IterationRecord
from metron.prefill_model import nonnegative_least_squares


class IterationTimeModel(msgspec.Struct, frozen=True):
    """An iteration's period: `coefficients` (seconds) times `iteration_features`, fitted to
    `num_iterations` logged ones with a median relative error of `median_error`."""

    coefficients: list[float]
    num_iterations: int
    median_error: float

    def chunk_s(self, chunk_tokens: int, context_before: int) -> float:
        """An iteration of one prefill chunk after `context_before` computed tokens, alone."""
        return float(np.dot(self.coefficients, _features([(chunk_tokens, context_before)], [])))


def _features(chunks: Sequence[tuple[int, int]], decode_contexts: Sequence[int]) -> list[float]:
    """base, prefill tokens, chunk-attention pairs, decodes, decode context tokens."""
    pairs = sum(tokens * (before + tokens / 2) for tokens, before in chunks)
    prefill_tokens = float(sum(tokens for tokens, _ in chunks))
    return [1.0, prefill_tokens, pairs, float(len(decode_contexts)), float(sum(decode_contexts))]


def iteration_features(record: IterationRecord) -> list[float]:
    entries = list(zip(record.num_tokens, record.num_computed_tokens, record.is_prefill, strict=True))
    chunks = [(tokens, before) for tokens, before, prefill in entries if prefill]
    return _features(chunks, [before for _, before, prefill in entries if not prefill])


def iteration_periods(records: Sequence[IterationRecord]) -> list[float]:
    """Each iteration's period (`records` in the log's order, that of their outputs): from the end
    of the one before (or its own scheduling, where the engine was idle in between) to its
    outputs, what it adds to the gaps between tokens."""
    ends = [-math.inf, *(record.completed_at for record in records)]
    return [record.completed_at - max(record.scheduled_at, end) for record, end in zip(records, ends, strict=False)]


def fit_iteration_time(records: Sequence[IterationRecord]) -> IterationTimeModel:
    """`records` in the log's order."""
    if len(records) < 10:
        raise ValueError(f"fitting iteration times needs at least 10 logged iterations, got {len(records)}")
    features = np.array([iteration_features(record) for record in records])
    periods = np.array(iteration_periods(records))
    coefficients = nonnegative_least_squares(features, periods)
    errors = np.abs(features @ coefficients - periods) / periods
    return IterationTimeModel(
        coefficients=[float(c) for c in coefficients],
        num_iterations=len(records),
        median_error=float(np.median(errors)),
    )
