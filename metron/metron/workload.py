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
"""

import msgspec
import numpy as np

from metron.arrivals import ArrivalConfig, arrival_times
from metron.lengths import LengthConfig, request_lengths


class RequestSpec(msgspec.Struct, frozen=True, kw_only=True):
    """One request to send: at `arrival_s` seconds after the run starts, a prompt of
    `prompt_tokens` tokens asking for exactly `output_tokens` output tokens. Warm-up requests
    are sent like any other but left out of every figure."""

    id: int
    arrival_s: float
    prompt_tokens: int
    output_tokens: int
    warmup: bool = False


class WorkloadConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`num_warmup_requests` extra requests come first (ids 0..num_warmup_requests-1), drawn from
    the same processes; `num_requests` measured requests follow. Arrivals and lengths draw from
    separate seeded streams, so changing one never changes the other."""

    num_requests: int = 100
    num_warmup_requests: int = 0
    seed: int = 0
    arrivals: ArrivalConfig = ArrivalConfig()
    lengths: LengthConfig = LengthConfig()

    def __post_init__(self) -> None:
        if self.num_requests < 1:
            raise ValueError(f"num_requests must be at least 1, got {self.num_requests}")
        if self.num_warmup_requests < 0:
            raise ValueError(f"num_warmup_requests must not be negative, got {self.num_warmup_requests}")
        if not 0 <= self.seed < 2**63:
            raise ValueError(f"seed must be in [0, 2**63), got {self.seed}")

    def with_rate(self, rate: float) -> "WorkloadConfig":
        """The same workload with arrivals at `rate` requests/s (what a capacity search varies)."""
        total = self.num_warmup_requests + self.num_requests
        return msgspec.structs.replace(self, arrivals=self.arrivals.with_rate(rate, total))


def generate_workload(config: WorkloadConfig) -> list[RequestSpec]:
    """Every request of the workload, ordered by arrival (then id). Same config, same requests."""
    total = config.num_warmup_requests + config.num_requests
    arrivals = arrival_times(config.arrivals, total, np.random.default_rng([config.seed, 0]))
    prompts, outputs = request_lengths(config.lengths, total, np.random.default_rng([config.seed, 1]))
    return [
        RequestSpec(
            id=index,
            arrival_s=float(arrivals[index]),
            prompt_tokens=int(prompts[index]),
            output_tokens=int(outputs[index]),
            warmup=index < config.num_warmup_requests,
        )
        for index in range(total)
    ]
