"""What the engine core keeps of each request it serves, beside the scheduler's own state."""

from dataclasses import dataclass

from engine.wire.sampling_params import SamplingParams


@dataclass(slots=True)
class EngineRequest:
    request_id: int
    prompt_token_ids: list[int]
    sampling: SamplingParams
    """Wall-clock time (time.time()) of its arrival."""
    arrival_time: float
    """Its scheduler slot (its row in the `TokenLedger`) once a batch has held it."""
    slot: int | None = None
