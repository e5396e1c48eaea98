"""What metron sends requests to.

A target streams one request at a time on behalf of the load generator, which calls `stream`
concurrently for as many requests as are in flight. It reports every output token to the
`TokenSink` the moment it learns of it; the sink stamps the time. Adding a target is one file: a
`Target` subclass with `check` (is it there?) and `stream`, plus its branch in the CLI.
"""

import abc
from types import TracebackType
from typing import Protocol, Self

import msgspec


class TargetError(Exception):
    """One request failed (an HTTP error, a broken stream, an error event); the message says how."""


class TargetUnreachable(TargetError):
    """The target cannot be reached at all (nothing listens, DNS fails, wrong URL)."""


class ChatMessage(msgspec.Struct, frozen=True):
    role: str
    """`system`, `user` or `assistant`."""
    content: str


class StreamRequest(msgspec.Struct, frozen=True, kw_only=True):
    """`prompt` is the whole text a completions endpoint (or the engine) gets. `messages` is the
    same conversation for a chat endpoint: a system message where the conversation has one, then
    user and assistant messages alternating (the server's answers as received), ending with this
    turn's user message; empty, a chat endpoint sends `prompt` as one user message."""

    id: int
    prompt: str
    prompt_tokens: int
    output_tokens: int
    messages: tuple[ChatMessage, ...] = ()


class TokenSink(Protocol):
    def now(self) -> float:
        """Seconds since the start of the run, on the run's clock."""
        ...

    def tokens(self, count: int, at: float | None = None, server_time_s: float | None = None) -> None:
        """`count` output tokens arrived at `at` (default: now); `server_time_s` is the server's own
        timestamp for them, on the run's clock, where the target reports one."""
        ...

    def scheduling_delay(self, seconds: float) -> None:
        """The server's queueing delay before the request's first iteration, where it reports one."""
        ...

    def prompt_tokens(self, count: int) -> None:
        """The server's own count of the prompt's tokens, where it reports one."""
        ...

    def cached_prompt_tokens(self, count: int) -> None:
        """How many of the prompt's tokens the server's prefix cache held, where it reports it."""
        ...

    def answer_text(self, text: str) -> None:
        """More of the output's text, in order (a session's next turn continues from it)."""
        ...


class Target(abc.ABC):
    """Use as `async with target:`; `check` before a run, then `stream` per request.
    `max_model_len` is the server's context length once `check` has learned it (None where the
    server does not say)."""

    max_model_len: int | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Releases connections; the default holds none."""

    @abc.abstractmethod
    def describe(self) -> dict[str, object]:
        """What this target is, for the run's recorded configuration (never secrets)."""

    @abc.abstractmethod
    async def check(self) -> None:
        """Raises TargetUnreachable (or TargetError for a misconfiguration the target reports,
        such as an unknown model) with a clear message; returns when the target is ready."""

    @abc.abstractmethod
    async def stream(self, request: StreamRequest, sink: TokenSink) -> None:
        """Sends `request`, reports its tokens to `sink` as they arrive, returns when the stream
        ends normally. Raises TargetError if it fails; partial tokens already reported count."""
