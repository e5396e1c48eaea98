"""What a request's consumer (an HTTP or RPC handler) reads while the engine produces tokens.

The engine loop must never wait for a slow reader, so this is not a bounded channel: tokens
accumulate (at most the request's `max_tokens`) and the reader takes everything that arrived
since its last read as one `TokenDelta`.
"""

from dataclasses import dataclass, field

import trio


class EngineFailedError(RuntimeError):
    """The engine cannot serve this request any more (for example a model worker died)."""


@dataclass(slots=True)
class TokenDelta:
    token_ids: list[int]
    text: str
    """Wall-clock time (time.time()) at which each token was produced."""
    times: list[float]


@dataclass(slots=True, frozen=True)
class RequestOutcome:
    finish_reason: str
    """Text released only at the end (held back for stop-string checks)."""
    text: str
    num_prompt_tokens: int
    num_output_tokens: int
    arrival_time: float
    first_scheduled_time: float | None
    num_preemptions: int


@dataclass(slots=True)
class RequestStream:
    _token_ids: list[int] = field(default_factory=list)
    _texts: list[str] = field(default_factory=list)
    _times: list[float] = field(default_factory=list)
    _outcome: RequestOutcome | None = None
    _failure: str | None = None
    _done: bool = False
    _wakeup: trio.Event = field(default_factory=trio.Event)

    def push(self, token_id: int, text: str, time: float) -> None:
        self._token_ids.append(token_id)
        self._texts.append(text)
        self._times.append(time)
        self._wakeup.set()

    def finish(self, outcome: RequestOutcome) -> None:
        self._outcome = outcome
        self._wakeup.set()

    def fail(self, message: str) -> None:
        self._failure = message
        self._wakeup.set()

    def __aiter__(self) -> "RequestStream":
        return self

    async def __anext__(self) -> TokenDelta | RequestOutcome:
        """Pending tokens first, then the outcome once; raises EngineFailedError on failure."""
        while not (self._token_ids or self._outcome or self._failure or self._done):
            await self._wakeup.wait()
            self._wakeup = trio.Event()
        if self._token_ids:
            delta = TokenDelta(self._token_ids, "".join(self._texts), self._times)
            self._token_ids, self._texts, self._times = [], [], []
            return delta
        if self._failure is not None and not self._done:
            self._done = True
            raise EngineFailedError(self._failure)
        if self._outcome is not None and not self._done:
            self._done = True
            return self._outcome
        raise StopAsyncIteration
