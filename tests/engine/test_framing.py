import socket
import threading

import msgspec
import pytest
import trio
import trio.testing

from engine.wire.framing import HEADER, FrameEncoder, FrameError, FrameReader, SocketFrameReader, frame, recv_frame


async def test_frames_round_trip_whatever_the_chunking() -> None:
    send, receive = trio.testing.memory_stream_one_way_pair()
    reader = FrameReader(receive, max_bytes=100)
    payloads = [b"", b"a", b"x" * 100]
    data = b"".join(frame(p) for p in payloads)
    for byte in data:  # worst case: one byte per receive
        await send.send_all(bytes([byte]))
    await send.aclose()
    assert [await reader.read() for _ in payloads] == payloads
    assert await reader.read() is None


async def test_an_oversized_frame_is_refused_from_its_header_alone() -> None:
    send, receive = trio.testing.memory_stream_one_way_pair()
    reader = FrameReader(receive, max_bytes=1024)
    await send.send_all(HEADER.pack(2**31))  # no body follows: the reader must not wait for it
    with pytest.raises(FrameError, match="2147483648 bytes exceeds the maximum of 1024"):
        await reader.read()


async def test_a_truncated_frame_is_an_error_not_a_clean_close() -> None:
    send, receive = trio.testing.memory_stream_one_way_pair()
    reader = FrameReader(receive)
    await send.send_all(frame(b"hello")[:-2])
    await send.aclose()
    with pytest.raises(FrameError, match="middle of a frame"):
        await reader.read()


def test_blocking_socket_frames() -> None:
    left, right = socket.socketpair()
    with left, right:
        left.sendall(frame(b"payload"))
        assert recv_frame(right) == b"payload"
        left.sendall(HEADER.pack(50))
        with pytest.raises(FrameError, match="exceeds"):
            recv_frame(right, max_bytes=10)
        left.close()
        assert recv_frame(right) is None


class _Raw:
    """A decoder that keeps the payload's bytes (a copy: the reader's buffer is reused)."""

    def decode(self, data: memoryview) -> bytes:
        return bytes(data)


def test_the_buffered_socket_reader_whatever_the_chunking() -> None:
    """Frames split byte by byte, several in one read, one larger than the buffer (it grows), and
    ones that cross the buffer's end (it compacts) all come out whole and in order."""
    payloads = [b"", b"a", b"x" * 100, bytes(range(256)) * 40, b"tail"]
    data = b"".join(frame(p) for p in payloads)
    for chunk_size in (1, 7, len(data)):
        left, right = socket.socketpair()
        with left, right:
            reader = SocketFrameReader(right, max_bytes=1 << 20, initial_bytes=64)
            sender = threading.Thread(
                target=lambda: [left.sendall(data[i : i + chunk_size]) for i in range(0, len(data), chunk_size)]
            )
            sender.start()
            assert [reader.read(_Raw()) for _ in payloads] == payloads
            sender.join()
            left.close()
            assert reader.read(_Raw()) is None


def test_the_buffered_socket_reader_refuses_bad_frames() -> None:
    left, right = socket.socketpair()
    with left, right:
        reader = SocketFrameReader(right, max_bytes=10)
        left.sendall(HEADER.pack(50))  # no body follows: refused from the header alone
        with pytest.raises(FrameError, match="50 bytes exceeds the maximum of 10"):
            reader.read(_Raw())
    left, right = socket.socketpair()
    with left, right:
        reader = SocketFrameReader(right)
        left.sendall(frame(b"hello")[:-2])
        left.close()
        with pytest.raises(FrameError, match="middle of a frame"):
            reader.read(_Raw())
    left, right = socket.socketpair()
    with left, right:
        reader = SocketFrameReader(right)
        left.sendall(HEADER.pack(5)[:2])  # a close inside the header
        left.close()
        with pytest.raises(FrameError, match="middle of a frame"):
            reader.read(_Raw())


def test_the_frame_encoder_reuses_its_buffer_for_frames_of_any_size() -> None:
    encoder = FrameEncoder()
    for message in ([1, 2, 3], "x" * 5000, {"a": b"\x00" * 10}, []):
        expected = frame(msgspec.msgpack.encode(message))
        assert bytes(encoder.frame(message)) == expected
