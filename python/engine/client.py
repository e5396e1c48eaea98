"""Client of the engine's msgspec socket protocol (see `engine.wire.protocol`).

Async (Trio):

    async with connect("127.0.0.1", 8001) as client:
        async with client.generate("Hello", SamplingParams(max_tokens=32)) as generation:
            async for chunk in generation:
                print(chunk.text, chunk.server_times, chunk.client_time)
        print(generation.result.finish_reason)

Leaving `generate`'s block before the request finished aborts it. Errors the server reports for
a request raise `RequestError`; a lost connection raises `ConnectionLostError`.

Sync: `SyncClient` runs the same client on a background thread (see its docstring).
`SamplingParams` (every request parameter) is importable from here too.
"""

import itertools
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

import msgspec
import trio

from engine.wire.framing import DEFAULT_MAX_FRAME_BYTES, FrameError, FrameReader, frame
from engine.wire.protocol import (
    PROTOCOL_VERSION,
    Abort,
    Error,
    Finished,
    Generate,
    Hello,
    Tokens,
    Welcome,
    server_decoder,
)
from engine.wire.sampling_params import SamplingParams
from engine.wire.step import TokenLogprobs

__all__ = [
    "ClientError",
    "ConnectionLostError",
    "EngineClient",
    "Generation",
    "RequestError",
    "SamplingParams",
    "SyncClient",
    "TokenChunk",
    "connect",
]


class ClientError(Exception):
    pass


class RequestError(ClientError):
    """The server refused or failed a request; `code` says how (e.g. invalid_request)."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class ConnectionLostError(ClientError):
    pass


@dataclass(slots=True, frozen=True)
class TokenChunk:
    token_ids: list[int]
    text: str
    """When the server produced each token (its wall clock)."""
    server_times: list[float]
    """When this chunk arrived here (time.time())."""
    client_time: float
    """One per token when the request asked for logprobs."""
    logprobs: list[TokenLogprobs] | None = None
    """In the first chunk when the request asked for prompt logprobs (None for the first token)."""
    prompt_logprobs: list[TokenLogprobs | None] | None = None


@dataclass(slots=True)
class Generation:
    """One request's stream of `TokenChunk`s; `result` is set once it finished."""

    request_id: int
    _client: "EngineClient"
    _chunks: deque[TokenChunk] = field(default_factory=deque)
    _wakeup: trio.Event = field(default_factory=trio.Event)
    result: Finished | None = None
    error: ClientError | None = None

    def _deliver(self, message: Tokens | Finished | Error, arrived: float) -> None:
        if isinstance(message, Tokens):
            self._chunks.append(
                TokenChunk(
                    message.token_ids, message.text, message.server_times, arrived, message.logprobs,
                    message.prompt_logprobs,
                )
            )
        elif isinstance(message, Finished):
            if message.text:
                self._chunks.append(TokenChunk([], message.text, [], arrived))
            self.result = message
        else:
            self.error = RequestError(message.code, message.message)
        self._wakeup.set()

    def _lose(self, error: ClientError) -> None:
        if self.result is None and self.error is None:
            self.error = error
            self._wakeup.set()

    @property
    def done(self) -> bool:
        return self.result is not None or self.error is not None

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> TokenChunk:
        while not self._chunks and not self.done:
            await self._wakeup.wait()
            self._wakeup = trio.Event()
        if self._chunks:
            return self._chunks.popleft()
        if self.error is not None:
            raise self.error
        raise StopAsyncIteration

    async def abort(self) -> None:
        if not self.done:
            await self._client._send(Abort(request_id=self.request_id))


class EngineClient:
    def __init__(self, stream: trio.SocketStream, max_frame_bytes: int):
        self._stream = stream
        self._reader = FrameReader(stream, max_frame_bytes)
        self._encoder = msgspec.msgpack.Encoder()
        self._send_lock = trio.Lock()
        self._generations: dict[int, Generation] = {}
        self._ids = itertools.count()
        self._lost: ClientError | None = None
        self.welcome: Welcome | None = None

    @property
    def model(self) -> str:
        return self.welcome.model if self.welcome else ""

    @asynccontextmanager
    async def generate(
        self,
        prompt: str | None = None,
        sampling: SamplingParams | None = None,
        *,
        prompt_token_ids: list[int] | None = None,
    ) -> AsyncIterator[Generation]:
        if self._lost is not None:
            raise self._lost
        request_id = next(self._ids)
        generation = Generation(request_id, self)
        self._generations[request_id] = generation
        message = Generate(
            request_id=request_id,
            prompt=prompt,
            prompt_token_ids=prompt_token_ids,
            sampling=sampling or SamplingParams(),
        )
        try:
            await self._send(message)
            yield generation
        finally:
            if not generation.done and self._lost is None:
                with trio.CancelScope(shield=True):
                    await generation.abort()
            self._generations.pop(request_id, None)

    async def complete(
        self, prompt: str | None = None, sampling: SamplingParams | None = None, **kwargs: list[int]
    ) -> tuple[str, list[int], Finished]:
        """Runs one request to the end: its text, token ids and final record."""
        texts: list[str] = []
        token_ids: list[int] = []
        async with self.generate(prompt, sampling, **kwargs) as generation:
            async for chunk in generation:
                texts.append(chunk.text)
                token_ids.extend(chunk.token_ids)
        if generation.result is None:
            raise ConnectionLostError("the request ended without a result")
        return "".join(texts), token_ids, generation.result

    async def _send(self, message: Generate | Abort | Hello) -> None:
        async with self._send_lock:
            try:
                await self._stream.send_all(frame(self._encoder.encode(message)))
            except (trio.BrokenResourceError, trio.ClosedResourceError) as error:
                raise ConnectionLostError(f"connection to the engine lost: {error}") from error

    async def _handshake(self, client_name: str, api_key: str | None) -> None:
        await self._send(Hello(protocol_version=PROTOCOL_VERSION, client_name=client_name, api_key=api_key))
        payload = await self._reader.read()
        if payload is None:
            raise ConnectionLostError("the engine closed the connection during the handshake")
        message = server_decoder.decode(payload)
        if isinstance(message, Error):
            raise RequestError(message.code, message.message)
        if not isinstance(message, Welcome):
            raise ClientError(f"expected Welcome, got {type(message).__name__}")
        self.welcome = message

    async def _receive_all(self) -> None:
        try:
            while (payload := await self._reader.read()) is not None:
                arrived = time.time()
                message = server_decoder.decode(payload)
                if isinstance(message, Welcome):
                    continue
                if isinstance(message, Error) and message.request_id is None:
                    raise RequestError(message.code, message.message)
                generation = self._generations.get(message.request_id)
                if generation is not None:
                    generation._deliver(message, arrived)
            self._lost = ConnectionLostError("the engine closed the connection")
        except (FrameError, trio.BrokenResourceError, msgspec.DecodeError) as error:
            self._lost = ConnectionLostError(f"connection to the engine lost: {error}")
        except RequestError as error:
            self._lost = error
        for generation in self._generations.values():
            generation._lose(self._lost)


@asynccontextmanager
async def connect(
    host: str = "127.0.0.1",
    port: int = 8001,
    *,
    client_name: str = "engine.client",
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    api_key: str | None = None,
) -> AsyncIterator[EngineClient]:
    """`api_key`: the server's key, when it was started with `--api-key`."""
    try:
        stream = await trio.open_tcp_stream(host, port)
    except OSError as error:
        raise ConnectionLostError(f"cannot connect to the engine at {host}:{port}: {error}") from error
    async with stream:
        client = EngineClient(stream, max_frame_bytes)
        await client._handshake(client_name, api_key)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client._receive_all)
            try:
                yield client
            finally:
                nursery.cancel_scope.cancel()


class SyncClient:
    """The async client driven from ordinary threads:

        with SyncClient("127.0.0.1", 8001) as client:
            for chunk in client.generate("Hello", SamplingParams(max_tokens=8)):
                print(chunk.text)
            text, token_ids, result = client.complete("Hi")
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 8001, *, api_key: str | None = None):
        self._address = (host, port)
        self._api_key = api_key
        self._client: EngineClient | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._ready = threading.Event()
        self._stop: trio.Event | None = None
        self._startup_error: BaseException | None = None
        self._thread = threading.Thread(target=trio.run, args=(self._main,), daemon=True, name="engine-client")

    async def _main(self) -> None:
        try:
            async with connect(*self._address, api_key=self._api_key) as client:
                self._client = client
                self._token = trio.lowlevel.current_trio_token()
                self._stop = trio.Event()
                self._ready.set()
                await self._stop.wait()
        except BaseException as error:  # reported to the caller's thread
            self._startup_error = error
            self._ready.set()

    def __enter__(self) -> Self:
        self._thread.start()
        self._ready.wait()
        if self._startup_error is not None:
            raise self._startup_error
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._stop is not None and self._token is not None:
            trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self._thread.join()

    def _connected(self) -> tuple[EngineClient, trio.lowlevel.TrioToken]:
        if self._client is None or self._token is None:
            raise RuntimeError("use SyncClient as a context manager: `with SyncClient(...) as client:`")
        return self._client, self._token

    def complete(
        self, prompt: str | None = None, sampling: SamplingParams | None = None
    ) -> tuple[str, list[int], Finished]:
        client, token = self._connected()
        return trio.from_thread.run(client.complete, prompt, sampling, trio_token=token)

    def generate(self, prompt: str | None = None, sampling: SamplingParams | None = None) -> Iterator[TokenChunk]:
        """Yields chunks as they arrive; closing the iterator early aborts the request."""
        client, token = self._connected()
        manager = client.generate(prompt, sampling)
        generation = trio.from_thread.run(manager.__aenter__, trio_token=token)
        try:
            while True:
                try:
                    yield trio.from_thread.run(generation.__anext__, trio_token=token)
                except StopAsyncIteration:
                    return
        finally:
            trio.from_thread.run(manager.__aexit__, None, None, None, trio_token=token)
