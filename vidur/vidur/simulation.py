"""Running a workload on a deployment, and what came out, per request in metron's terms.

simulator = Simulator(plan_deployment(config, predictor))
requests = generate_workload(workload_config)
result = simulator.run(Workload.from_requests(requests, workload_config.shared_prefix_tokens))
records = result.records(DeadlineConfig(tbt_s=0.1))    # metron.metrics.RequestRecord
"""

import dataclasses
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from metron.arrivals import arrival_times
from metron.deadlines import DeadlineConfig
from metron.lengths import request_lengths
from metron.metrics import RequestRecord, RequestTimes, request_records
from metron.workload import RequestSpec, WorkloadConfig, generate_workload

from vidur import _simulator
from vidur.deployment import Deployment
from vidur.spilled_columns import SpilledColumns, mapped_column


@dataclass(frozen=True, slots=True)
class Workload:
    """Requests as columns, sorted by arrival. Plain numpy arrays (picklable).

    Prompts may share prefixes, as metron's do (the simulator builds their token ids:
    `rust/simulator/src/prefix_workload.rs`): every first turn starts with the same
    `shared_prefix_tokens`, and a session's later turn `follows` an earlier request (its index
    here; -1 for none) and is sent `think_time_s` after that one ended; its `arrival_s` is then
    only the earliest it could go. A simulation's result holds the workload as sent: `arrival_s`
    when each request went, `scheduled_arrival_s` the workload's own times (None where they are
    the same)."""

    ids: np.ndarray
    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    warmup: np.ndarray
    shared_prefix_tokens: int = 0
    follows: np.ndarray | None = None
    think_time_s: np.ndarray | None = None
    scheduled_arrival_s: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.ids)
        for name in ("arrival_s", "prompt_tokens", "output_tokens", "warmup"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"workload column {name} has {len(getattr(self, name))} entries, expected {n}")
        for name in ("follows", "think_time_s", "scheduled_arrival_s"):
            column = getattr(self, name)
            if column is not None and len(column) != n:
                raise ValueError(f"workload column {name} has {len(column)} entries, expected {n}")
        if (self.follows is None) != (self.think_time_s is None):
            raise ValueError("a workload with sessions needs both follows and think_time_s")

    @classmethod
    def from_requests(cls, requests: Sequence[RequestSpec], shared_prefix_tokens: int = 0) -> "Workload":
        """`requests` (metron's), their prompts after a system prompt of `shared_prefix_tokens`."""
        ordered = sorted(requests, key=lambda r: (r.arrival_s, r.id))
        sessions = {}
        if any(r.follows_id is not None for r in ordered):
            index = {r.id: i for i, r in enumerate(ordered)}
            sessions = {
                "follows": np.array([-1 if r.follows_id is None else index[r.follows_id] for r in ordered]),
                "think_time_s": np.array([r.think_time_s for r in ordered], dtype=np.float64),
            }
        return cls(
            ids=np.array([r.id for r in ordered], dtype=np.int64),
            arrival_s=np.array([r.arrival_s for r in ordered], dtype=np.float64),
            prompt_tokens=np.array([r.prompt_tokens for r in ordered], dtype=np.int64),
            output_tokens=np.array([r.output_tokens for r in ordered], dtype=np.int64),
            warmup=np.array([r.warmup for r in ordered], dtype=bool),
            shared_prefix_tokens=shared_prefix_tokens,
            **sessions,
        )

    def prompt_token_ids(self, index: int) -> list[int]:
        """The token ids the simulator gives request `index`'s prompt under prefix caching."""
        return _simulator.prompt_token_ids(
            num_prompt_tokens=self.prompt_tokens.tolist(),
            num_output_tokens=self.output_tokens.tolist(),
            request=index,
            shared_prefix_tokens=self.shared_prefix_tokens,
            follows=None if self.follows is None else self.follows.tolist(),
        )

    @classmethod
    def generated(cls, config: WorkloadConfig) -> "Workload":
        """metron's `generate_workload(config)` as columns. A workload of independent requests
        (no sessions, no shared prefix) is drawn straight into arrays from the same seeded
        streams, in the same order, with no object per request."""
        if config.sessions.num_turns > 1 or config.shared_prefix_tokens:
            return cls.from_requests(generate_workload(config), config.shared_prefix_tokens)
        total = config.num_warmup_requests + config.num_requests
        arrivals = arrival_times(config.arrivals, total, np.random.default_rng([config.seed, 0]))
        prompts, outputs = request_lengths(config.lengths, total, np.random.default_rng([config.seed, 1]))
        ids = np.arange(total, dtype=np.int64)  # arrivals never decrease: already in order
        return cls(ids, arrivals.astype(np.float64), prompts, outputs, ids < config.num_warmup_requests)

    def first(self, n: int) -> "Workload":
        """The workload's first `n` requests (a session's turns follow earlier ones only)."""
        return self.part(0, n)

    def part(self, start: int, stop: int) -> "Workload":
        """Requests `start:stop` (`follows` still indexes the whole workload)."""
        columns = {
            f.name: value[start:stop] if isinstance(value := getattr(self, f.name), np.ndarray) else value
            for f in dataclasses.fields(self)
        }
        return Workload(**columns)

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(slots=True)
class SimulationResult:
    """Per-request columns (workload order): replica, token_offsets, num_tokens, token_times,
    first_scheduled_s, finished_s, finish_reason, num_preemptions, arrival_s (when it was sent),
    cached_prompt_tokens. `workload` is the workload as sent. Per-iteration columns: see
    `vidur._simulator.SimulationOutput.iteration_columns`. Where the run streamed them to disk,
    the iteration columns and `token_times` are read from their files (`SpilledColumns`).
    `output` is the simulator's own record of the run, which writes the iterations as CSV.

    A run stopped at `max_simulated_s` (`is_cut`) saw only the workload's first `num_arrived`
    requests; those unfinished then were interrupted, as a metron run stopped early records them."""

    deployment: Deployment
    workload: Workload
    requests: dict[str, np.ndarray]
    iterations: Mapping[str, np.ndarray]
    rejections: dict[int, str]
    num_iterations: int
    end_s: float
    wall_s: float
    output: _simulator.SimulationOutput
    num_arrived: int
    is_cut: bool = False
    max_simulated_s: float | None = None
    caches_prefixes: bool = False
    token_times_path: Path | None = None  # where the run streamed `requests["token_times"]`

    def token_slots(self, start: int, stop: int) -> np.ndarray:
        """`requests["token_times"][start:stop]`, read from the file where the run streamed them
        (not through its mapping, whose pages would stay resident)."""
        if self.token_times_path is None:
            return self.requests["token_times"][start:stop]
        return np.fromfile(self.token_times_path, dtype="<f8", count=stop - start, offset=8 * start)

    def cached_prompt_tokens(self) -> np.ndarray | None:
        """Per request the prompt tokens its replica's prefix cache held at its first admission,
        -1 for one that failed; None when the replicas cache no prefix."""
        if not self.caches_prefixes:
            return None
        failed = self.requests["finish_reason"] == 0
        return np.where(failed, -1, self.requests["cached_prompt_tokens"].astype(np.int64))

    @property
    def num_unfinished(self) -> int:
        """Requests that arrived but had not finished when the run was cut (0 for a whole run)."""
        if not self.is_cut:
            return 0
        unfinished = self.requests["finish_reason"][: self.num_arrived] == 0
        return int(np.count_nonzero(unfinished)) - sum(i < self.num_arrived for i in self.rejections)

    def token_times(self, index: int) -> np.ndarray:
        start = int(self.requests["token_offsets"][index])
        return self.requests["token_times"][start : start + int(self.requests["num_tokens"][index])]

    def measured(self) -> list[RequestTimes]:
        """What a client would have measured of every request that arrived."""
        workload, columns = self.workload, self.requests
        all_times = columns["token_times"].tolist()
        offsets = columns["token_offsets"].tolist()
        counts = columns["num_tokens"].tolist()
        delays = (columns["first_scheduled_s"] - workload.arrival_s).tolist()
        reasons = columns["finish_reason"].tolist()
        scheduled = workload.arrival_s if workload.scheduled_arrival_s is None else workload.scheduled_arrival_s
        scheduled_s = scheduled.tolist()
        cached_column = self.cached_prompt_tokens()
        cached = [None] * len(workload) if cached_column is None else cached_column.tolist()
        measured = []
        for index in range(self.num_arrived):
            error = self.rejections.get(index)
            unfinished = error is None and reasons[index] == 0
            if unfinished and not self.is_cut:
                error = "the simulation ended before the request finished"
            delay = delays[index]
            measured.append(
                RequestTimes(
                    id=int(workload.ids[index]),
                    arrival_s=float(workload.arrival_s[index]),
                    prompt_tokens=int(workload.prompt_tokens[index]),
                    token_times_s=all_times[offsets[index] : offsets[index] + counts[index]],
                    requested_output_tokens=int(workload.output_tokens[index]),
                    scheduling_delay_s=None if math.isnan(delay) else delay,
                    error=error,
                    scheduled_arrival_s=scheduled_s[index],
                    interrupted=unfinished and self.is_cut,
                    warmup=bool(workload.warmup[index]),
                    cached_prompt_tokens=None if cached[index] == -1 else cached[index],
                )
            )
        return measured

    def records(self, deadlines: DeadlineConfig) -> list[RequestRecord]:
        """metron's per-request records, exactly as a real run of the workload would produce."""
        return request_records(self.measured(), deadlines)


def _columns(raw: dict[str, tuple[str, bytes]]) -> dict[str, np.ndarray]:
    return {name: np.frombuffer(data, dtype=np.dtype(dtype)) for name, (dtype, data) in raw.items()}


def _iteration_columns(output: _simulator.SimulationOutput) -> Mapping[str, np.ndarray]:
    spilled = output.spilled_iteration_columns()
    if spilled is None:
        return _columns(output.iteration_columns())
    return SpilledColumns(*spilled)


class Simulator:
    """A deployment with its cost model built once, to run any number of workloads."""

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self._cost_model = deployment.cost_model.build()
        self._scheduler = deployment.scheduler_config()

    @property
    def cost_model(self) -> _simulator.CostModel:
        return self._cost_model

    def run(
        self,
        workload: Workload,
        *,
        record_iterations: bool = True,
        max_simulated_s: float | None = None,
        spill_directory: str | Path | None = None,
        spill_block_rows: int = 65536,
    ) -> SimulationResult:
        """Simulates `workload`; with `max_simulated_s`, stops at that simulated time. With
        `spill_directory`, the iteration records and the token times are streamed to files there
        as the run goes, `spill_block_rows` at a time (a long run's largest records, never held;
        the files must outlive the result's use)."""
        cluster = self.deployment.config.cluster
        started = time.perf_counter()
        output = _simulator.simulate(
            cost_model=self._cost_model,
            scheduler=self._scheduler,
            # Arrays, read in place: no Python object per request.
            arrival_times=np.ascontiguousarray(workload.arrival_s, dtype=np.float64),
            num_prompt_tokens=np.ascontiguousarray(workload.prompt_tokens, dtype=np.int64),
            num_output_tokens=np.ascontiguousarray(workload.output_tokens, dtype=np.int64),
            num_replicas=cluster.num_replicas,
            router=cluster.router,
            seed=cluster.seed,
            record_iterations=record_iterations,
            shared_prefix_tokens=workload.shared_prefix_tokens,
            follows=None if workload.follows is None else workload.follows.tolist(),
            think_time_s=None if workload.think_time_s is None else workload.think_time_s.tolist(),
            max_simulated_s=max_simulated_s,
            spill_directory=spill_directory,
            spill_block_rows=spill_block_rows,
        )
        wall_s = time.perf_counter() - started
        requests = _columns(output.request_columns())
        if output.spilled_token_times is not None:
            num_slots = int(requests["token_offsets"][-1])
            requests["token_times"] = mapped_column(output.spilled_token_times, np.dtype("<f8"), num_slots)
        if workload.follows is not None:
            scheduled = workload.arrival_s
            workload = dataclasses.replace(workload, arrival_s=requests["arrival_s"], scheduled_arrival_s=scheduled)
        return SimulationResult(
            deployment=self.deployment,
            workload=workload,
            requests=requests,
            iterations=_iteration_columns(output),
            rejections=dict(output.rejections),
            num_iterations=output.num_iterations,
            end_s=output.end_s,
            wall_s=wall_s,
            output=output,
            caches_prefixes=self._scheduler.enable_prefix_caching,
            num_arrived=output.num_arrived,
            is_cut=output.is_cut,
            max_simulated_s=max_simulated_s,
            token_times_path=output.spilled_token_times,
        )
