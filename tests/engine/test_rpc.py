"""`engine.client` against a real server process over the msgspec socket protocol."""

import socket
import time

import msgspec
import pytest
import trio

from engine.client import RequestError, SyncClient, connect
from engine.wire.framing import HEADER, frame, recv_frame
from engine.wire.protocol import PROTOCOL_VERSION, Error, Generate, Hello, Welcome, server_decoder
from engine.wire.sampling_params import SamplingParams
from support.engine_server import RunningServer

GREEDY = SamplingParams(max_tokens=10, temperature=0.0, ignore_eos=True)


async def test_tokens_stream_with_server_timestamps(server: RunningServer) -> None:
    async with connect(server.host, server.rpc_port) as client:
        assert client.model == "tiny"
        chunks = []
        async with client.generate("Hello engine", GREEDY) as generation:
            async for chunk in generation:
                chunks.append(chunk)
        result = generation.result
        assert result is not None and result.finish_reason == "length" and result.num_output_tokens == 10
        token_times = [t for c in chunks for t in c.server_times]
        assert len(token_times) == 10 == sum(len(c.token_ids) for c in chunks)
        assert token_times == sorted(token_times)
        assert result.arrival_time <= token_times[0] <= chunks[0].client_time + 0.5
        assert result.first_scheduled_time is not None and result.first_scheduled_time >= result.arrival_time - 0.01


async def test_the_socket_and_http_give_the_same_greedy_tokens(server: RunningServer) -> None:
    import httpx

    prompt = [11, 12, 13, 14, 15]
    async with connect(server.host, server.rpc_port) as client:
        text, token_ids, _ = await client.complete(sampling=GREEDY, prompt_token_ids=prompt)
    body = {"model": "tiny", "prompt": prompt, "max_tokens": 10, "temperature": 0, "ignore_eos": True}
    async with httpx.AsyncClient() as http:
        reply = (await http.post(f"{server.url}/v1/completions", json=body)).json()
    assert reply["choices"][0]["text"] == text
    assert len(token_ids) == 10


async def test_leaving_a_generation_early_aborts_it(server: RunningServer) -> None:
    async with connect(server.host, server.rpc_port) as client:
        async with client.generate("abort me", SamplingParams(max_tokens=500, ignore_eos=True)) as generation:
            async for _ in generation:
                break
        text, _, result = await client.complete("after the abort", SamplingParams(max_tokens=3, ignore_eos=True))
        assert result.num_output_tokens == 3


async def test_invalid_requests_fail_alone(server: RunningServer) -> None:
    async with connect(server.host, server.rpc_port) as client:
        with pytest.raises(RequestError, match="invalid_request: top_p must be in"):
            await client.complete("x", SamplingParams(top_p=2.0))
        with pytest.raises(RequestError, match="give exactly one of prompt and prompt_token_ids"):
            await client.complete(sampling=GREEDY)
        _, token_ids, _ = await client.complete("fine", GREEDY)
        assert len(token_ids) == 10


def raw_connection(server: RunningServer) -> socket.socket:
    sock = socket.create_connection((server.host, server.rpc_port), timeout=30)
    sock.sendall(frame(msgspec.msgpack.encode(Hello(protocol_version=PROTOCOL_VERSION))))
    assert isinstance(server_decoder.decode(recv_frame(sock) or b""), Welcome)
    return sock


def read_error(sock: socket.socket) -> Error:
    message = server_decoder.decode(recv_frame(sock) or b"")
    assert isinstance(message, Error)
    return message


def test_a_malformed_message_gets_an_error_and_the_connection_goes_on(server: RunningServer) -> None:
    with raw_connection(server) as sock:
        sock.sendall(frame(b"\xc1 not msgpack"))
        assert read_error(sock).code == "invalid_message"
        sock.sendall(frame(msgspec.msgpack.encode({"type": "generate", "request_id": "seven"})))
        assert read_error(sock).code == "invalid_message"
        request = Generate(request_id=1, prompt="still here", sampling=SamplingParams(max_tokens=1))
        sock.sendall(frame(msgspec.msgpack.encode(request)))
        assert server_decoder.decode(recv_frame(sock) or b"").request_id == 1  # type: ignore[union-attr]


def test_an_oversized_frame_gets_an_error_and_a_close(server: RunningServer) -> None:
    with raw_connection(server) as sock:
        sock.sendall(HEADER.pack(2**31))
        error = read_error(sock)
        assert error.code == "frame_error" and "exceeds the maximum" in error.message
        assert recv_frame(sock) is None


def test_protocol_violations_are_named(server: RunningServer) -> None:
    with socket.create_connection((server.host, server.rpc_port), timeout=30) as sock:
        sock.sendall(frame(msgspec.msgpack.encode(Hello(protocol_version=99))))
        error = read_error(sock)
        assert error.code == "unsupported_version" and "speaks 1" in error.message
    with socket.create_connection((server.host, server.rpc_port), timeout=30) as sock:
        sock.sendall(frame(msgspec.msgpack.encode(Generate(request_id=1, prompt="x"))))
        assert read_error(sock).code == "protocol_error"
    with raw_connection(server) as sock:
        long_request = Generate(request_id=4, prompt="x", sampling=SamplingParams(max_tokens=300, ignore_eos=True))
        sock.sendall(frame(msgspec.msgpack.encode(long_request)))
        sock.sendall(frame(msgspec.msgpack.encode(Generate(request_id=4, prompt="again"))))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            message = server_decoder.decode(recv_frame(sock) or b"")
            if isinstance(message, Error):
                assert message.code == "duplicate_request"
                break


def test_the_sync_client(server: RunningServer) -> None:
    with SyncClient(server.host, server.rpc_port) as client:
        chunks = list(client.generate("sync", GREEDY))
        text, token_ids, result = client.complete("sync", GREEDY)
    assert "".join(c.text for c in chunks) == text
    assert result.finish_reason == "length" and len(token_ids) == 10


async def test_connecting_to_nothing_is_a_clear_error() -> None:
    from engine.client import ConnectionLostError

    with pytest.raises(ConnectionLostError, match="cannot connect to the engine at 127.0.0.1:1"):
        async with connect("127.0.0.1", 1):
            await trio.sleep(0)
