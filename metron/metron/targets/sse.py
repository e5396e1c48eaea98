"""Server-sent events, parsed line by line as they arrive (the WHATWG event-stream format)."""

import msgspec


class ServerSentEvent(msgspec.Struct):
    data: str
    event: str = "message"
    received_s: float = 0.0


class EventStreamParser:
    """Feed it lines (without their line break) with the time each arrived; it returns a finished
    event on the blank line that ends one. An event's time is that of its first line."""

    def __init__(self) -> None:
        self._data: list[str] = []
        self._event = "message"
        self._started_s: float | None = None

    def feed(self, line: str, received_s: float) -> ServerSentEvent | None:
        if not line:
            if not self._data:
                self._event, self._started_s = "message", None
                return None
            event = ServerSentEvent("\n".join(self._data), self._event, self._started_s or received_s)
            self._data, self._event, self._started_s = [], "message", None
            return event
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if self._started_s is None:
            self._started_s = received_s
        if field == "data":
            self._data.append(value)
        elif field == "event":
            self._event = value
        return None
