"""`engine`: this project's serving engine over its msgspec socket protocol (`engine.client`).

All requests share one connection. Besides the client's own arrival times, every token carries
the server's timestamp, and the engine reports each request's scheduling delay (first scheduled
minus arrival, both on its clock). Server times are converted to the run's clock assuming the two
clocks agree, which holds on one machine (on two, only as well as they are synchronised).
"""

import time
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

import msgspec

from metron.targets.base import StreamRequest, Target, TargetError, TargetUnreachable, TokenSink

if TYPE_CHECKING:
    from engine.client import EngineClient


class EngineTargetConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: int = 8001
    temperature: float = 0.0
    ignore_eos: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"the engine port must be in 1..65535, got {self.port}")


def parse_address(address: str) -> tuple[str, int]:
    """`HOST:PORT` (or `:PORT` for 127.0.0.1)."""
    host, separator, port = address.rpartition(":")
    if not separator or not port.isdigit():
        raise ValueError(f"the engine address must be HOST:PORT, got {address!r}")
    return host or "127.0.0.1", int(port)


class EngineTarget(Target):
    """`api_key`: the engine's `--api-key`, when it has one (kept out of `describe`)."""

    def __init__(self, config: EngineTargetConfig, api_key: str | None = None) -> None:
        self.config = config
        self._api_key = api_key
        self._connection = AsyncExitStack()
        self._client: "EngineClient | None" = None

    def describe(self) -> dict[str, object]:
        # The same before and after check(): capacity searches match cached runs on it.
        return {"kind": "engine", **msgspec.to_builtins(self.config)}

    async def check(self) -> None:
        if self._client is not None:
            return
        try:
            from engine.client import ClientError, connect
        except ImportError as error:
            raise TargetError("the engine target needs this project's engine package installed") from error
        try:
            self._client = await self._connection.enter_async_context(
                connect(self.config.host, self.config.port, api_key=self._api_key)
            )
        except ClientError as error:
            raise TargetUnreachable(str(error)) from error
        self.max_model_len = self._client.welcome.max_model_len if self._client.welcome else None

    async def aclose(self) -> None:
        self._client = None
        await self._connection.aclose()

    async def stream(self, request: StreamRequest, sink: TokenSink) -> None:
        from engine.client import ClientError
        from engine.wire.sampling_params import SamplingParams

        if self._client is None:
            raise TargetError("the engine target streams only after check() has connected")
        sampling = SamplingParams(
            max_tokens=request.output_tokens, temperature=self.config.temperature, ignore_eos=self.config.ignore_eos
        )
        # The run's clock: seconds since the run started; the engine stamps wall-clock time.
        wall_minus_run = time.time() - sink.now()
        try:
            async with self._client.generate(request.prompt, sampling) as generation:
                async for chunk in generation:
                    if chunk.text:
                        sink.answer_text(chunk.text)
                    # Tokens that came together arrived together (when the client read the
                    # frame, not when this task woke), each stamped by the server.
                    arrived = chunk.client_time - wall_minus_run
                    for server_time in chunk.server_times:
                        sink.tokens(1, at=arrived, server_time_s=server_time - wall_minus_run)
            result = generation.result
        except ClientError as error:
            raise TargetError(str(error)) from error
        if result is not None:
            sink.prompt_tokens(result.num_prompt_tokens)
            sink.cached_prompt_tokens(result.num_cached_tokens)
            if result.first_scheduled_time is not None:
                sink.scheduling_delay(result.first_scheduled_time - result.arrival_time)
