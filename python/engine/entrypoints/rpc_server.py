"""The msgspec socket server (see `engine.wire.protocol`).

Per connection: one task reads frames, one writer task owns the socket's send side (fed by a
bounded channel), and one task per request tokenizes its prompt (off the event loop), submits it
and forwards its stream. The first message must be a `Hello` (with the API key, when the server
has one) within `hello_timeout_s`; anything else gets an `Error` and a close. After it, a
malformed message gets an `Error` and the connection carries on; a framing error (oversized or
truncated frame) gets an `Error` and a close, since the byte stream cannot be resynchronised.
A connection that goes away aborts every request it started that is still running, at once,
so their KV blocks return to the pool.
"""

import hmac
import logging
from dataclasses import dataclass

import msgspec
import trio

from engine.frontend.engine_client import EngineClient
from engine.wire.framing import FrameError, FrameReader, frame
from engine.wire.protocol import (
    PROTOCOL_VERSION,
    Abort,
    ClientMessage,
    Error,
    Finished,
    Generate,
    Hello,
    ServerMessage,
    Tokens,
    Welcome,
    client_decoder,
)
from engine.errors import EngineFailedError, EngineUnavailableError
from engine.frontend.request_stream import RequestOutcome, RequestStream
from engine.entrypoints.prompt import PromptTokenizer

log = logging.getLogger("engine.rpc")

OUTBOX_SIZE = 256
FINAL_MESSAGE_GRACE_S = 2.0


@dataclass(frozen=True, slots=True)
class RpcConfig:
    model_name: str
    max_frame_bytes: int
    hello_timeout_s: float = 10.0
    api_key: str | None = None


class RpcServer:
    def __init__(self, engine: EngineClient, prompts: PromptTokenizer, config: RpcConfig):
        self._engine = engine
        self._prompts = prompts
        self._config = config
        self._connections: set[_Connection] = set()

    async def serve(self, listeners: list[trio.SocketListener]) -> None:
        await trio.serve_listeners(self._serve_connection, listeners)

    @property
    def is_idle(self) -> bool:
        """No connection has a request running or a message not yet written (a drain waits for it)."""
        return all(connection.is_idle for connection in self._connections)

    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        welcome = Welcome(
            protocol_version=PROTOCOL_VERSION,
            model=self._config.model_name,
            max_model_len=self._engine.max_model_len,
            vocab_size=self._engine.model.vocab_size,
            max_frame_bytes=self._config.max_frame_bytes,
        )
        connection = _Connection(self._engine, self._prompts, self._config, stream)
        self._connections.add(connection)
        try:
            await connection.serve(welcome)
        finally:
            self._connections.discard(connection)


class _Connection:
    def __init__(self, engine: EngineClient, prompts: PromptTokenizer, config: RpcConfig, stream: trio.SocketStream):
        self._engine = engine
        self._prompts = prompts
        self._config = config
        self._stream = stream
        self._reader = FrameReader(stream, config.max_frame_bytes)
        self._encoder = msgspec.msgpack.Encoder()
        # None closes the connection once everything before it is written.
        self._outbox_send, self._outbox_receive = trio.open_memory_channel[ServerMessage | None](OUTBOX_SIZE)
        # Client request id -> engine request id (None while its prompt is being tokenized);
        # an entry leaves only when its stream has ended, so a closed connection aborts the rest.
        self._live: dict[int, int | None] = {}
        self._aborted_early: set[int] = set()
        self._is_writing = False

    @property
    def is_idle(self) -> bool:
        return not self._live and not self._is_writing and not self._outbox_send.statistics().current_buffer_used

    async def serve(self, welcome: Welcome) -> None:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._write_all, nursery.cancel_scope)
                if await self._greet(welcome):
                    await self._read_all(nursery)
                nursery.cancel_scope.cancel()
        finally:
            for engine_id in self._live.values():
                if engine_id is not None:
                    self._engine.abort(engine_id)
            self._live.clear()
            with trio.CancelScope(shield=True):
                await self._stream.aclose()

    async def _greet(self, welcome: Welcome) -> bool:
        """Reads the Hello; False (after a final Error where one can be sent) if the client must go."""
        with trio.move_on_after(self._config.hello_timeout_s) as waited:
            message = await self._read_message()
        if waited.cancelled_caught:
            reason = f"no Hello within {self._config.hello_timeout_s:g} s"
            await self._send_final(Error(request_id=None, code="timeout", message=reason))
            return False
        match message:
            case Hello(protocol_version=version) if version != PROTOCOL_VERSION:
                reason = f"protocol version {version} is not supported; this server speaks {PROTOCOL_VERSION}"
                await self._send_final(Error(request_id=None, code="unsupported_version", message=reason))
            case Hello(api_key=key) if self._config.api_key is not None and not _same_key(key, self._config.api_key):
                await self._send_final(Error(request_id=None, code="unauthorized", message="invalid API key"))
            case Hello():
                await self._outbox_send.send(welcome)
                return True
            case Error():
                await self._send_final(message)
            case None:
                pass
            case _:
                reason = "the first message must be Hello"
                await self._send_final(Error(request_id=None, code="protocol_error", message=reason))
        return False

    async def _read_message(self) -> ClientMessage | Error | None:
        """The next message; an Error for an undecodable one; None once the client closed."""
        try:
            payload = await self._reader.read()
        except FrameError as error:
            await self._send_final(Error(request_id=None, code="frame_error", message=str(error)))
            return None
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return None
        if payload is None:
            return None
        try:
            message: ClientMessage = client_decoder.decode(payload)
        except msgspec.DecodeError as error:
            return Error(request_id=None, code="invalid_message", message=str(error))
        return message

    async def _read_all(self, nursery: trio.Nursery) -> None:
        while (message := await self._read_message()) is not None:
            match message:
                case Error():
                    await self._outbox_send.send(message)
                case Generate(request_id=request_id) if request_id in self._live:
                    reason = f"request id {request_id} is already running on this connection"
                    await self._outbox_send.send(Error(request_id=request_id, code="duplicate_request", message=reason))
                case Generate():
                    self._live[message.request_id] = None
                    nursery.start_soon(self._run_request, message)
                case Abort(request_id=request_id):
                    self._abort(request_id)
                case Hello():
                    reason = "Hello was already received"
                    await self._outbox_send.send(Error(request_id=None, code="protocol_error", message=reason))

    def _abort(self, request_id: int) -> None:
        if request_id not in self._live:
            return
        engine_id = self._live[request_id]
        if engine_id is None:
            self._aborted_early.add(request_id)
        else:
            self._engine.abort(engine_id)

    async def _run_request(self, request: Generate) -> None:
        client_id = request.request_id
        stream = None
        try:
            stream = await self._submit(request)
            if stream is not None:
                await self._pump(client_id, stream)
        finally:
            # Only a stream that ended leaves; a cancelled pump's request is aborted by `serve`.
            if stream is None or stream.is_done:
                self._live.pop(client_id, None)
            self._aborted_early.discard(client_id)

    async def _submit(self, request: Generate) -> RequestStream | None:
        def refuse(code: str, message: str) -> Error:
            return Error(request_id=request.request_id, code=code, message=message)

        try:
            if (request.prompt is None) == (request.prompt_token_ids is None):
                raise ValueError("give exactly one of prompt and prompt_token_ids")
            if request.prompt is not None:
                token_ids = await self._prompts.encode(request.prompt)
            else:
                token_ids = list(request.prompt_token_ids or [])
            if request.request_id in self._aborted_early:
                return None
            engine_id, stream = self._engine.submit(token_ids, request.sampling)
        except EngineUnavailableError as error:
            await self._outbox_send.send(refuse("unavailable", str(error)))
            return None
        except EngineFailedError as error:
            await self._outbox_send.send(refuse("engine_failed", str(error)))
            return None
        except ValueError as error:
            await self._outbox_send.send(refuse("invalid_request", str(error)))
            return None
        self._live[request.request_id] = engine_id
        return stream

    async def _pump(self, request_id: int, stream: RequestStream) -> None:
        try:
            async for event in stream:
                if isinstance(event, RequestOutcome):
                    await self._outbox_send.send(
                        Finished(
                            request_id=request_id,
                            finish_reason=event.finish_reason,
                            text=event.text,
                            num_prompt_tokens=event.num_prompt_tokens,
                            num_output_tokens=event.num_output_tokens,
                            arrival_time=event.arrival_time,
                            first_scheduled_time=event.first_scheduled_time,
                            num_preemptions=event.num_preemptions,
                            num_cached_tokens=event.num_cached_tokens,
                        )
                    )
                else:
                    await self._outbox_send.send(
                        Tokens(request_id, event.token_ids, event.text, event.times, event.logprobs,
                               event.prompt_logprobs)
                    )
        except EngineFailedError as error:
            await self._outbox_send.send(Error(request_id=request_id, code="engine_failed", message=str(error)))

    async def _send_final(self, message: Error) -> None:
        """Queues a last message; the writer closes the connection after sending it."""
        await self._outbox_send.send(message)
        await self._outbox_send.send(None)
        with trio.move_on_after(FINAL_MESSAGE_GRACE_S):
            await trio.sleep_forever()

    async def _write_all(self, connection_scope: trio.CancelScope) -> None:
        async with self._outbox_receive:
            async for message in self._outbox_receive:
                if message is None:
                    break
                self._is_writing = True
                try:
                    await self._stream.send_all(frame(self._encoder.encode(message)))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    break
                finally:
                    self._is_writing = False
        connection_scope.cancel()


def _same_key(given: str | None, expected: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())
