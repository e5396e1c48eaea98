"""Length-prefixed frames: a big-endian u32 byte count, then the payload.

The receiver checks the announced size against its maximum before reading the body, so an
oversized or corrupt header can never make it allocate or wait for gigabytes.
"""

import socket
import struct
from typing import Protocol, TypeVar

import msgspec
import trio

T = TypeVar("T", covariant=True)

HEADER = struct.Struct("!I")
DEFAULT_MAX_FRAME_BYTES = 16 * 1024 * 1024


class FrameError(Exception):
    """The peer broke the framing; the connection cannot be resynchronised."""


def frame(payload: bytes) -> bytes:
    return HEADER.pack(len(payload)) + payload


class FrameEncoder:
    """Encodes messages as frames into one buffer it reuses, so a frame costs no allocation and
    no copy besides the encoding; the frame it returns is valid until its next call."""

    def __init__(self) -> None:
        self._encoder = msgspec.msgpack.Encoder()
        self._buffer = bytearray()

    def frame(self, message: object) -> bytearray:
        self._encoder.encode_into(message, self._buffer, HEADER.size)
        HEADER.pack_into(self._buffer, 0, len(self._buffer) - HEADER.size)
        return self._buffer


def _check_size(size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise FrameError(f"frame of {size} bytes exceeds the maximum of {max_bytes}")


class FrameReader:
    """Reads frames from a Trio stream."""

    def __init__(self, stream: trio.abc.ReceiveStream, max_bytes: int = DEFAULT_MAX_FRAME_BYTES):
        self._stream = stream
        self._max_bytes = max_bytes
        self._buffer = bytearray()

    async def _fill(self, size: int) -> bool:
        while len(self._buffer) < size:
            chunk = await self._stream.receive_some(max(65536, size - len(self._buffer)))
            if not chunk:
                if self._buffer:
                    raise FrameError("connection closed in the middle of a frame")
                return False
            self._buffer += chunk
        return True

    async def read(self) -> bytes | None:
        """The next frame's payload, or None when the peer closed cleanly between frames."""
        if not await self._fill(HEADER.size):
            return None
        (size,) = HEADER.unpack_from(self._buffer)
        _check_size(size, self._max_bytes)
        if not await self._fill(HEADER.size + size):
            raise FrameError("connection closed in the middle of a frame")
        payload = bytes(self._buffer[HEADER.size : HEADER.size + size])
        del self._buffer[: HEADER.size + size]
        return payload


def recv_frame(sock: socket.socket, max_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> bytes | None:
    """Blocking read of one frame from a plain socket; None on a clean close."""
    first = sock.recv(HEADER.size)
    if not first:
        return None
    header = first + _recv_exactly(sock, HEADER.size - len(first))
    (size,) = HEADER.unpack(header)
    _check_size(size, max_bytes)
    return _recv_exactly(sock, size)


class Decoder(Protocol[T]):
    def decode(self, data: memoryview, /) -> T: ...


class SocketFrameReader:
    """Reads frames from a plain blocking socket into one buffer it keeps: a frame already
    waiting costs one `recv_into` and no copy (the model worker reads each step so, between two
    forwards). `read` hands the payload to `decoder` while it is still in the buffer."""

    def __init__(self, sock: socket.socket, max_bytes: int = DEFAULT_MAX_FRAME_BYTES, initial_bytes: int = 1 << 20):
        self._socket = sock
        self._max_bytes = max_bytes
        self._buffer = bytearray(initial_bytes)
        self._start = self._end = 0

    def _fill(self, size: int) -> bool:
        """Until `size` bytes from the frame's start are in the buffer; False on a close."""
        if self._start + size > len(self._buffer):
            pending = self._buffer[self._start : self._end]
            if size > len(self._buffer):
                self._buffer = bytearray(max(size, 2 * len(self._buffer)))
            self._buffer[: len(pending)] = pending
            self._start, self._end = 0, len(pending)
        while self._end - self._start < size:
            with memoryview(self._buffer) as free:
                count = self._socket.recv_into(free[self._end :])
            if count == 0:
                return False
            self._end += count
        return True

    def read(self, decoder: Decoder[T]) -> T | None:
        """The next frame, decoded; None when the peer closed cleanly between frames."""
        if not self._fill(HEADER.size):
            if self._end > self._start:
                raise FrameError("connection closed in the middle of a frame")
            return None
        (size,) = HEADER.unpack_from(self._buffer, self._start)
        _check_size(size, self._max_bytes)
        if not self._fill(HEADER.size + size):
            raise FrameError("connection closed in the middle of a frame")
        begin = self._start + HEADER.size
        self._start = begin + size
        if self._start == self._end:
            self._start = self._end = 0
        with memoryview(self._buffer) as view, view[begin : begin + size] as payload:
            return decoder.decode(payload)


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    view = bytearray(size)
    received = 0
    while received < size:
        count = sock.recv_into(memoryview(view)[received:])
        if count == 0:
            raise FrameError("connection closed in the middle of a frame")
        received += count
    return bytes(view)
