"""`--iteration-log FILE`: one JSON line per engine iteration, for calibrating and validating the
simulator against this engine (`vidur validate`, `vidur fit-overheads`).

The first line is an `IterationLogHeader` (`{"header": {...}}`): the model, the device and the
scheduler's resolved config, so a reader can rebuild the same scheduler. Every later line is an
`IterationRecord`: the batch as the scheduler made it (request ids, tokens each runs, tokens each
had computed), when it was scheduled and when its outputs came back (wall clock, `time.time()`,
the clock request timestamps use), and where the time went on both sides:

    engine: schedule_s (schedule + build + send the step), apply_s (apply its outputs),
            delivery_s (from the worker sending the outputs to the engine taking them: the
            transfer, and the engine finishing other work first)
    worker: idle_s (waiting for the step), prepare_s (inputs), forward_s (model), execute_s (all of
            the worker's step: prepare, forward and sampling)

`queued` says the step was sent while an earlier one still ran (async scheduling), so the worker's
`idle_s` before it was only the message's transfer. The file is written in batches and flushed
whenever the engine goes idle, so a reader sees every finished iteration once the load stops.
"""

from pathlib import Path
from typing import IO, Any

import msgspec
import numpy as np

from engine.wire.step import IS_PREFILL, PRODUCES_TOKEN

LOG_VERSION = 1
FLUSH_EVERY = 256


class IterationLogHeader(msgspec.Struct, kw_only=True):
    version: int = LOG_VERSION
    model: str
    device: str
    dtype: str
    attention_backend: str
    tensor_parallel_size: int
    pipeline_parallel_size: int
    num_kv_blocks: int
    """The scheduler's resolved config: every `SchedulerConfig` field."""
    scheduler: dict[str, Any]


class IterationRecord(msgspec.Struct, kw_only=True):
    step_id: int
    scheduled_at: float
    completed_at: float
    request_ids: list[int]
    num_tokens: list[int]
    num_computed_tokens: list[int]
    produces_token: list[bool]
    is_prefill: list[bool]
    preempted_ids: list[int]
    queued: bool
    schedule_s: float
    apply_s: float
    delivery_s: float
    idle_s: float
    prepare_s: float
    forward_s: float
    execute_s: float


class _Line(msgspec.Struct, omit_defaults=True):
    header: IterationLogHeader | None = None


SCHEDULER_FIELDS = (
    "policy",
    "token_budget",
    "max_num_seqs",
    "max_model_len",
    "block_size",
    "num_blocks",
    "watermark",
    "enable_prefix_caching",
    "order",
    "dynamic_chunking",
    "max_batches_in_flight",
    "async_scheduling",
    "max_decode_iters_between_prefills",
)


def scheduler_fields(config: Any) -> dict[str, Any]:
    """A `SchedulerConfig`'s fields as plain values (its keyword arguments)."""
    fields = {name: getattr(config, name) for name in SCHEDULER_FIELDS}
    if fields["dynamic_chunking"] is not None:
        fields["dynamic_chunking"] = list(fields["dynamic_chunking"])
    return fields


class IterationLog:
    """Opens the file at once (a bad path fails before the model loads); `start` writes the
    header, `append` the records, `close` (or leaving the `with` block) flushes and closes."""

    def __init__(self, path: Path) -> None:
        try:
            self._file: IO[bytes] = open(path, "wb")  # noqa: SIM115 (closed in close())
        except OSError as error:
            raise ValueError(f"cannot write the iteration log {path}: {error.strerror}") from None
        self._encoder = msgspec.json.Encoder()
        self._pending: list[bytes] = []

    def __enter__(self) -> "IterationLog":
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def start(self, header: IterationLogHeader) -> None:
        self._pending += (self._encoder.encode(_Line(header)), b"\n")
        self.flush()

    def append(self, record: IterationRecord) -> None:
        self._pending += (self._encoder.encode(record), b"\n")
        if len(self._pending) >= 2 * FLUSH_EVERY:
            self.flush()

    def flush(self) -> None:
        if self._pending and not self._file.closed:
            self._file.write(b"".join(self._pending))
            self._file.flush()
        self._pending.clear()

    def close(self) -> None:
        self.flush()
        self._file.close()


def batch_columns(batch: Any) -> dict[str, list[Any]]:
    """A scheduler batch's columns (its `bytes` views) as the record's lists."""
    flags = np.frombuffer(batch.flags, dtype=np.uint8)
    return {
        "request_ids": np.frombuffer(batch.ids, dtype="<u8").tolist(),
        "num_tokens": np.frombuffer(batch.num_tokens_per_request, dtype="<u4").tolist(),
        "num_computed_tokens": np.frombuffer(batch.num_computed_tokens, dtype="<u4").tolist(),
        "produces_token": ((flags & PRODUCES_TOKEN) != 0).tolist(),
        "is_prefill": ((flags & IS_PREFILL) != 0).tolist(),
    }


def read_iteration_log(path: Path) -> tuple[IterationLogHeader, list[IterationRecord]]:
    """The header and records of a log; raises ValueError naming the file and line of a bad one."""
    header_decoder = msgspec.json.Decoder(_Line)
    record_decoder = msgspec.json.Decoder(IterationRecord)
    header: IterationLogHeader | None = None
    records = []
    with open(path, "rb") as file:
        for number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            if not line.endswith(b"\n"):
                break  # the last line of a log still being written (or of a killed engine)
            try:
                if header is None:
                    header = header_decoder.decode(line).header
                    if header is None:
                        raise ValueError("the first line is not the log's header")
                    if header.version != LOG_VERSION:
                        raise ValueError(f"log version {header.version}, this reader knows {LOG_VERSION}")
                else:
                    records.append(record_decoder.decode(line))
            except (msgspec.DecodeError, ValueError) as error:
                raise ValueError(f"iteration log {path}, line {number}: {error}") from None
    if header is None:
        raise ValueError(f"iteration log {path} is empty")
    return header, records
