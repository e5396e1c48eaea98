"""What a request's consumer (an HTTP or RPC handler) reads while the engine produces tokens.

The engine loop only appends token ids here, so its per-token work stays small; the consumer
turns them into text (incremental detokenization and stop strings) when it reads, which happens
while the model computes the next iteration. The loop never waits for a slow consumer: tokens
accumulate (at most the request's `max_tokens`) and a read takes everything that arrived since
the last one as one `TokenDelta`.

A stop string found by the consumer ends the request through `on_stop`; tokens the engine
produced after the stop string are dropped.
"""

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from engine.frontend.detokenizer import IncrementalDetokenizer
from engine.errors import EngineFailedError
from engine.wire.step import TokenLogprobs


@dataclass(slots=True)
class TokenDelta:
    token_ids: list[int]
    text: str
    """Wall-clock time (time.time()) at which each token was produced."""
    times: list[float]
    """One per token where the request asked for logprobs, else None."""
    logprobs: list[TokenLogprobs] | None = None
    """On the first delta of a request that asked for prompt logprobs: one per prompt token
    (None for the first, which has no context)."""
    prompt_logprobs: list[TokenLogprobs | None] | None = None


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
    """Prompt tokens the prefix cache held when the request was first scheduled."""
    num_cached_tokens: int = 0


@dataclass(slots=True)
class RequestStream:
    detokenizer: IncrementalDetokenizer
    """Called once when the consumer finds a stop string, so the engine stops generating."""
    on_stop: Callable[[], None]
    _token_ids: list[int] = field(default_factory=list)
    _times: list[float] = field(default_factory=list)
    _logprobs: list[TokenLogprobs] = field(default_factory=list)
    _prompt_logprobs: list[TokenLogprobs | None] | None = None
    _outcome: RequestOutcome | None = None
    _failure: str | None = None
    _done: bool = False
    _num_delivered: int = 0
    _wakeup: trio.Event = field(default_factory=trio.Event)

    def push(self, token_id: int, time: float, logprobs: TokenLogprobs | None = None) -> None:
        self._token_ids.append(token_id)
        self._times.append(time)
        if logprobs is not None:
            self._logprobs.append(logprobs)
        self._wakeup.set()

    def add_prompt_logprobs(self, num_prompt_tokens: int, first_position: int, tokens: list[TokenLogprobs]) -> None:
        """Logprobs of prompt positions `first_position...`; they all arrive before the first token."""
        if self._prompt_logprobs is None:
            self._prompt_logprobs = [None] * num_prompt_tokens
        self._prompt_logprobs[first_position : first_position + len(tokens)] = tokens

    def finish(self, outcome: RequestOutcome) -> None:
        self._outcome = outcome
        self._wakeup.set()

    def fail(self, message: str) -> None:
        self._failure = message
        self._wakeup.set()

    @property
    def is_done(self) -> bool:
        """The engine is done with the request (finished, stopped, aborted or failed)."""
        return self._outcome is not None or self._failure is not None

    def __aiter__(self) -> "RequestStream":
        return self

    async def __anext__(self) -> TokenDelta | RequestOutcome:
        """Pending tokens first, then the outcome once; raises EngineFailedError on failure."""
        while not (self._token_ids or self._outcome or self._failure or self._done):
            await self._wakeup.wait()
            self._wakeup = trio.Event()
        if self._token_ids and self.detokenizer.stopped_by is None:
            return self._take_delta()
        if self._failure is not None and not self._done:
            self._done = True
            raise EngineFailedError(self._failure)
        if self._outcome is not None and not self._done:
            self._done = True
            return self._final_outcome(self._outcome)
        raise StopAsyncIteration

    def _take_delta(self) -> TokenDelta:
        token_ids, times, logprobs = self._token_ids, self._times, self._logprobs
        self._token_ids, self._times, self._logprobs = [], [], []
        texts = []
        for index, token_id in enumerate(token_ids):
            texts.append(self.detokenizer.add_token(token_id))
            if self.detokenizer.stopped_by is not None:
                del token_ids[index + 1 :], times[index + 1 :], logprobs[index + 1 :]
                self.on_stop()
                break
        prompt_logprobs = self._prompt_logprobs if self._num_delivered == 0 else None
        self._num_delivered += len(token_ids)
        return TokenDelta(token_ids, "".join(texts), times, logprobs or None, prompt_logprobs)

    def _final_outcome(self, outcome: RequestOutcome) -> RequestOutcome:
        stopped = self.detokenizer.stopped_by is not None
        return dataclasses.replace(
            outcome,
            finish_reason="stop" if stopped else outcome.finish_reason,
            text=self.detokenizer.flush(),
            num_output_tokens=self._num_delivered,
        )
