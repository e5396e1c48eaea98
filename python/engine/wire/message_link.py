"""One end of the socket between the front-end and the engine-core process: messages out, in
order, from plain (non-async) code, and frames in.

`post` first tries one non-blocking send, which neither waits nor yields to other tasks; only
what the socket would not take at once is queued for `pump`, the task that owns the slow path.
So a step's outputs leave the core before anything else runs, and a request submitted from a
handler reaches the core without a task switch.
"""

import socket

import msgspec
import trio

from engine.wire.framing import FrameEncoder, FrameReader

MAX_MESSAGE_BYTES = 1 << 30


class LinkClosedError(ConnectionError):
    pass


class MessageLink:
    def __init__(self, sock: socket.socket):
        sock.setblocking(False)
        self._socket = sock
        self._stream = trio.SocketStream(trio.socket.from_stdlib_socket(sock))
        self.reader = FrameReader(self._stream, MAX_MESSAGE_BYTES)
        self._frames = FrameEncoder()
        self._queue: list[bytes] = []
        self._queued = trio.Event()
        self._pumping = False
        self.closed = False

    def post(self, message: msgspec.Struct) -> None:
        """Sends `message` after every message posted before it. Raises LinkClosedError once the
        peer is gone."""
        if self.closed:
            raise LinkClosedError("the link to the other process is closed")
        payload = self._frames.frame(message)
        sent = 0
        if not self._queue and not self._pumping:
            try:
                sent = self._socket.send(payload)
            except BlockingIOError:
                pass
            except OSError as error:
                self.closed = True
                raise LinkClosedError(f"the link to the other process broke: {error}") from error
            if sent == len(payload):
                return
        self._queue.append(bytes(payload[sent:]))
        self._queued.set()

    async def pump(self) -> None:
        """Writes what `post` queued, until the link closes."""
        while not self.closed:
            await self._queued.wait()
            self._queued = trio.Event()
            while self._queue:
                data = b"".join(self._queue)
                self._queue.clear()
                self._pumping = True
                try:
                    await self._stream.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    self.closed = True
                    return
                finally:
                    self._pumping = False

    async def flush(self) -> None:
        """Sends what is still queued: for the end, once `pump` no longer runs."""
        if self._queue and not self.closed and not self._pumping:
            data = b"".join(self._queue)
            self._queue.clear()
            try:
                await self._stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self.closed = True

    @property
    def has_queued(self) -> bool:
        return bool(self._queue) or self._pumping

    async def aclose(self) -> None:
        self.closed = True
        await self._stream.aclose()
