"""Multi-turn sessions: consecutive requests of a workload that continue one conversation.

Requests are grouped by id into sessions of `num_turns` (the last one may be shorter). A
session's first turn arrives like any request; each later turn is sent `think_time_s` after the
previous turn's answer has arrived, and its prompt is the previous prompt, the answer text
received and a new user message (joined by `TURN_SEPARATOR`), so a server with prefix caching
finds the whole conversation so far in its cache. A chat endpoint gets the same conversation as
messages: the system message where the first turn has one, then alternating each earlier user
message, the answer the server gave it, and the new user message.
"""

import math

import msgspec

from metron.targets.base import ChatMessage

TURN_SEPARATOR = "\n"


class SessionConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    num_turns: int = 1
    think_time_s: float = 0.0

    def __post_init__(self) -> None:
        if self.num_turns < 1:
            raise ValueError(f"a session needs at least 1 turn (--turns), got {self.num_turns}")
        if not (self.think_time_s >= 0 and math.isfinite(self.think_time_s)):
            raise ValueError(f"the think time (--think-time) must be a non-negative number, got {self.think_time_s}")

    def num_sessions(self, num_requests: int) -> int:
        return -(-num_requests // self.num_turns)

    def turn_of(self, request_id: int) -> int:
        """0 for a session's first request."""
        return request_id % self.num_turns


class Turn(msgspec.Struct, frozen=True):
    """What a session sends at one turn: the conversation so far as one text (`prompt`) and as
    chat messages (`messages`)."""

    prompt: str
    messages: tuple[ChatMessage, ...]


def first_turn(message: str, system: str = "") -> Turn:
    """A first turn: the user `message`, after the `system` text where there is one (joined by
    `TURN_SEPARATOR` into the prompt, its own message to a chat endpoint)."""
    if not system:
        return Turn(message, (ChatMessage("user", message),))
    return Turn(system + TURN_SEPARATOR + message, (ChatMessage("system", system), ChatMessage("user", message)))


def next_turn(previous: Turn, answer: str, message: str) -> Turn:
    """The turn after `previous`, whose answer was `answer`, with the new user `message`."""
    return Turn(
        previous.prompt + answer + TURN_SEPARATOR + message,
        (*previous.messages, ChatMessage("assistant", answer), ChatMessage("user", message)),
    )
