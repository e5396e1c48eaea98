"""A workload: which requests arrive when, and how long each is. Plain data, no networking, so the
simulator (vidur) replays exactly the requests a real run sends.

    from metron.workload import WorkloadConfig, generate_workload
    from metron.arrivals import ArrivalConfig
    from metron.lengths import LengthConfig

    requests = generate_workload(WorkloadConfig(
        num_requests=1000, seed=0,
        arrivals=ArrivalConfig(kind="poisson", rate=4.0),
        lengths=LengthConfig(kind="trace", trace_path="../shared/data/traces/splitwise_conv.csv"),
    ))
    for r in requests: r.id, r.arrival_s, r.prompt_tokens, r.output_tokens, r.warmup

`shared_prefix_tokens` puts the same system prompt of that many tokens before every drawn
prompt; `sessions` groups requests into multi-turn conversations (see `metron.sessions`).
"""

import msgspec
import numpy as np

from metron.arrivals import ArrivalConfig, arrival_times
from metron.lengths import LengthConfig, request_lengths
from metron.sessions import SessionConfig


class RequestSpec(msgspec.Struct, frozen=True, kw_only=True):
    """One request to send: at `arrival_s` seconds after the run starts, a prompt of
    `prompt_tokens` tokens asking for exactly `output_tokens` output tokens. Warm-up requests
    are sent like any other but left out of every figure.

    A later turn of a session `follows_id` (the session's previous request): it is sent
    `think_time_s` after that one's answer has arrived, so its `arrival_s` is only the earliest
    it could go (the previous arrival plus the think time), and its `prompt_tokens` what the
    conversation holds if every answer has its requested length (the previous prompt and output,
    then its own drawn user message)."""

    id: int
    arrival_s: float
    prompt_tokens: int
    output_tokens: int
    warmup: bool = False
    follows_id: int | None = None
    think_time_s: float = 0.0


class WorkloadConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`num_warmup_requests` extra requests come first (ids 0..num_warmup_requests-1), drawn from
    the same processes; `num_requests` measured requests follow. Arrivals and lengths draw from
    separate seeded streams, so changing one never changes the other."""

    num_requests: int = 100
    num_warmup_requests: int = 0
    seed: int = 0
    arrivals: ArrivalConfig = ArrivalConfig()
    lengths: LengthConfig = LengthConfig()
    shared_prefix_tokens: int = 0
    sessions: SessionConfig = SessionConfig()

    def __post_init__(self) -> None:
        if self.num_requests < 1:
            raise ValueError(f"num_requests must be at least 1, got {self.num_requests}")
        if self.num_warmup_requests < 0:
            raise ValueError(f"num_warmup_requests must not be negative, got {self.num_warmup_requests}")
        if not 0 <= self.seed < 2**63:
            raise ValueError(f"seed must be in [0, 2**63), got {self.seed}")
        if self.shared_prefix_tokens < 0:
            raise ValueError(
                f"the shared prefix (--shared-prefix-tokens) must not be negative, got {self.shared_prefix_tokens}"
            )

    @property
    def num_arrivals(self) -> int:
        """Arrivals drawn: one per request, or with sessions one per session."""
        return self.sessions.num_sessions(self.num_warmup_requests + self.num_requests)

    def with_rate(self, rate: float) -> "WorkloadConfig":
        """The same workload with arrivals at `rate` requests/s (what a capacity search varies)."""
        return msgspec.structs.replace(self, arrivals=self.arrivals.with_rate(rate, self.num_arrivals))


def generate_workload(config: WorkloadConfig) -> list[RequestSpec]:
    """Every request of the workload, ordered by arrival (then id). Same config, same requests."""
    total = config.num_warmup_requests + config.num_requests
    arrivals = arrival_times(config.arrivals, config.num_arrivals, np.random.default_rng([config.seed, 0]))
    prompts, outputs = request_lengths(config.lengths, total, np.random.default_rng([config.seed, 1]))
    sessions = config.sessions
    requests: list[RequestSpec] = []
    for index in range(total):
        spec = RequestSpec(
            id=index,
            arrival_s=float(arrivals[index // sessions.num_turns]),
            prompt_tokens=config.shared_prefix_tokens + int(prompts[index]),
            output_tokens=int(outputs[index]),
            warmup=index < config.num_warmup_requests,
        )
        if sessions.turn_of(index) > 0:
            previous = requests[-1]
            spec = msgspec.structs.replace(
                spec,
                arrival_s=previous.arrival_s + sessions.think_time_s,
                prompt_tokens=previous.prompt_tokens + previous.output_tokens + int(prompts[index]),
                follows_id=previous.id,
                think_time_s=sessions.think_time_s,
            )
        requests.append(spec)
    if sessions.num_turns > 1:
        requests.sort(key=lambda r: (r.arrival_s, r.id))
    return requests
