"""The engine's iterations against the simulator's, for one load.

- Same batches? Each iteration's shape (sequences, prefill tokens, decode tokens), engine and
  simulator in order: how many lead off identical, and what fraction match position by position.
  Where the predicted and measured times agree, the batches are the same batches, because the
  engine and the simulator run the same scheduler on the same arrivals.
- Predicted against measured time per batch shape: every engine iteration's own batch through the
  cost model, its workers' time (inputs, forward pass, sampling: `execute_s`, and the step's
  transfer: the wait of a step sent ahead, the median of those for the others) against the
  prediction, grouped by shape: decodes only (by batch size), and batches with a prefill (by
  tokens); and the forward pass alone, measured against predicted.
"""

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

Shape = tuple[int, int, int]


def engine_shapes(records: Sequence[Any]) -> list[Shape]:
    shapes = []
    for record in records:
        prefill = sum(n for n, is_prefill in zip(record.num_tokens, record.is_prefill, strict=True) if is_prefill)
        shapes.append((len(record.request_ids), prefill, sum(record.num_tokens) - prefill))
    return shapes


def simulated_shapes(iterations: Mapping[str, np.ndarray]) -> list[Shape]:
    return list(
        zip(
            iterations["num_seqs"].tolist(),
            iterations["num_prefill_tokens"].tolist(),
            iterations["num_decode_tokens"].tolist(),
            strict=True,
        )
    )


def compare_batches(engine: Sequence[Shape], simulated: Sequence[Shape]) -> dict[str, object]:
    common = min(len(engine), len(simulated))
    matches = [engine[i] == simulated[i] for i in range(common)]
    leading = next((i for i, same in enumerate(matches) if not same), common)
    return {
        "num_engine_iterations": len(engine),
        "num_simulated_iterations": len(simulated),
        "identical_leading_iterations": leading,
        "fraction_identical_by_position": float(np.mean(matches)) if matches else None,
        "first_difference": None
        if leading == common
        else {"index": leading, "engine": list(engine[leading]), "simulated": list(simulated[leading])},
    }


def _shape_bucket(shape: Shape) -> str:
    num_seqs, prefill, _ = shape
    if prefill == 0:
        low = 1 << int(np.log2(num_seqs))
        return f"decode x{low}-{2 * low - 1}"
    low = 1 << int(np.log2(prefill))
    return f"prefill {low}-{2 * low - 1} tokens"


def time_by_shape(records: Sequence[Any], cost_model: Any) -> dict[str, object]:
    """Measured against predicted workers' time per engine iteration, by shape bucket, and the
    forward pass alone over every iteration."""
    waits = [r.idle_s for r in records if r.queued]
    transfer_s = float(np.median(waits)) if waits else 0.0
    buckets: dict[str, tuple[list[float], list[float]]] = {}
    forward_measured, forward_predicted = [], []
    for record, shape in zip(records, engine_shapes(records), strict=True):
        entries = list(
            zip(record.num_tokens, record.num_computed_tokens, record.is_prefill, record.produces_token, strict=True)
        )
        prediction = cost_model.predict(entries)
        measured, predicted = buckets.setdefault(_shape_bucket(shape), ([], []))
        measured.append(record.execute_s + (record.idle_s if record.queued else transfer_s))
        predicted.append(prediction.worker_s)
        forward_measured.append(record.forward_s)
        forward_predicted.append(prediction.forward_s)
    rows = {}
    for bucket, (measured, predicted) in sorted(buckets.items()):
        m, p = np.asarray(measured), np.asarray(predicted)
        rows[bucket] = {
            "num_iterations": len(m),
            "measured_median_s": float(np.median(m)),
            "predicted_median_s": float(np.median(p)),
            "mape": float(np.mean(np.abs(p - m) / m)),
        }
    fm, fp = np.asarray(forward_measured), np.asarray(forward_predicted)
    return {
        "by_shape": rows,
        "forward_mape": float(np.mean(np.abs(fp - fm) / fm)) if len(fm) else None,
        "forward_median_ratio": float(np.median(fp / fm)) if len(fm) else None,
    }
