"""`vidur`: a simulated deployment as a target, so a simulated run and a real one of the same
workload produce the same report.

Requests interact (they share batches and the KV cache), so the simulation of the whole workload
runs once, in `check`, with the requests the run will send. `stream` then plays back one
request's simulated tokens, shifted to when the load generator actually sent it: each token is
reported when its time comes on the run's clock (instantly under a virtual clock such as
`trio.testing.MockClock(autojump_threshold=0)`, in real time otherwise).
"""

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from metron.metrics import RequestTimes
from metron.targets.base import StreamRequest, Target, TargetError, TokenSink
from metron.workload import RequestSpec

if TYPE_CHECKING:
    from vidur.simulation import Simulator


class VidurTarget(Target):
    """`requests` as `generate_workload` made them, after a system prompt of
    `shared_prefix_tokens` (what a replica with prefix caching finds cached)."""

    def __init__(
        self, simulator: "Simulator", requests: Sequence[RequestSpec], shared_prefix_tokens: int = 0
    ) -> None:
        self.simulator = simulator
        self.requests = list(requests)
        self.shared_prefix_tokens = shared_prefix_tokens
        self._simulated: dict[int, RequestTimes] | None = None

    @classmethod
    def from_config(
        cls,
        config_path: str | Path | None,
        overrides: list[str],
        data_dir: Path,
        requests: Sequence[RequestSpec],
        shared_prefix_tokens: int = 0,
    ) -> "VidurTarget":
        """A deployment from a vidur config file (TOML or YAML) with `section.key=value`
        overrides; `data_dir` holds the public profiles (`profiling/`) unless the config names
        its own."""
        from vidur import DeploymentError, Simulator, load_config, plan_deployment, train_predictor
        from vidur.config import profiling_roots

        config = load_config(config_path, overrides, traces_dir=data_dir / "traces")
        base_dir = Path(config_path).parent if config_path is not None else Path(".")
        predictor = train_predictor(profiling_roots(config, data_dir, base_dir))
        try:
            deployment = plan_deployment(config.deployment, predictor)
        except DeploymentError as error:
            raise TargetError(f"vidur cannot simulate this deployment: {error}") from None
        return cls(Simulator(deployment), requests, shared_prefix_tokens)

    def describe(self) -> dict[str, object]:
        return {"kind": "vidur", "deployment": self.simulator.deployment.describe()}

    async def check(self) -> None:
        if self._simulated is None:
            self._simulated = await trio.to_thread.run_sync(self._simulate)

    def _simulate(self) -> dict[int, RequestTimes]:
        from vidur.simulation import Workload

        workload = Workload.from_requests(self.requests, self.shared_prefix_tokens)
        result = self.simulator.run(workload, record_iterations=False)
        return {times.id: times for times in result.measured()}

    async def stream(self, request: StreamRequest, sink: TokenSink) -> None:
        if self._simulated is None:
            raise TargetError("the vidur target streams only after check() has run the simulation")
        simulated = self._simulated.get(request.id)
        if simulated is None:
            raise TargetError(f"request {request.id} is not in the workload this target simulated")
        simulated_lengths = (simulated.prompt_tokens, simulated.requested_output_tokens)
        if simulated_lengths != (request.prompt_tokens, request.output_tokens):
            raise TargetError(f"request {request.id} differs from the simulated one (prompt or output length)")
        shift = sink.now() - simulated.arrival_s
        if simulated.scheduling_delay_s is not None:
            sink.scheduling_delay(simulated.scheduling_delay_s)
        if simulated.cached_prompt_tokens is not None:
            sink.cached_prompt_tokens(simulated.cached_prompt_tokens)
        origin = trio.current_time() - sink.now()
        for token_time in simulated.token_times_s:
            at = token_time + shift
            await trio.sleep_until(origin + at)
            sink.tokens(1, at=at)
        if simulated.error is not None:
            raise TargetError(simulated.error)
