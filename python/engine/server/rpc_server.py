"""The msgspec socket server (see `engine.protocol`).

Per connection: one task reads frames, one writer task owns the socket's send side (fed by a
bounded channel), and one pump task per request forwards its stream. A malformed message gets
an `Error` and the connection carries on; a framing error (oversized or truncated frame) gets an
`Error` and a close, since the byte stream cannot be resynchronised. A connection that goes
away aborts all its requests, so their KV blocks return to the pool.
"""

import msgspec
import trio

from engine.engine_core import EngineCore
from engine.framing import FrameError, FrameReader, frame
from engine.protocol import (
    PROTOCOL_VERSION,
    Abort,
    Error,
    Finished,
    Generate,
    Hello,
    ServerMessage,
    Tokens,
    Welcome,
    client_decoder,
)
from engine.request_stream import EngineFailedError, RequestOutcome, RequestStream
from engine.server.prompt import prompt_token_ids

OUTBOX_SIZE = 256
FINAL_MESSAGE_GRACE_S = 2.0


class RpcServer:
    def __init__(self, engine: EngineCore, model_name: str, max_frame_bytes: int):
        self._engine = engine
        self._model_name = model_name
        self._max_frame_bytes = max_frame_bytes

    async def run(
        self, host: str, port: int, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
    ) -> None:
        listeners = await trio.open_tcp_listeners(port, host=host)
        task_status.started(listeners[0].socket.getsockname()[1])
        await trio.serve_listeners(self._serve_connection, listeners)

    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        connection = _Connection(self._engine, stream, self._max_frame_bytes)
        welcome = Welcome(
            protocol_version=PROTOCOL_VERSION,
            model=self._model_name,
            max_model_len=self._engine.max_model_len,
            vocab_size=self._engine.model.vocab_size,
            max_frame_bytes=self._max_frame_bytes,
        )
        await connection.serve(welcome)


class _Connection:
    def __init__(self, engine: EngineCore, stream: trio.SocketStream, max_frame_bytes: int):
        self._engine = engine
        self._stream = stream
        self._reader = FrameReader(stream, max_frame_bytes)
        self._encoder = msgspec.msgpack.Encoder()
        # None closes the connection once everything before it is written.
        self._outbox_send, self._outbox_receive = trio.open_memory_channel[ServerMessage | None](OUTBOX_SIZE)
        self._engine_ids: dict[int, int] = {}  # client request id -> engine request id

    async def serve(self, welcome: Welcome) -> None:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._write_all, nursery.cancel_scope)
                await self._read_all(nursery, welcome)
                nursery.cancel_scope.cancel()
        finally:
            for engine_id in self._engine_ids.values():
                self._engine.abort(engine_id)
            with trio.CancelScope(shield=True):
                await self._stream.aclose()

    async def _read_all(self, nursery: trio.Nursery, welcome: Welcome) -> None:
        greeted = False
        while True:
            try:
                payload = await self._reader.read()
            except FrameError as error:
                await self._send_final(Error(request_id=None, code="frame_error", message=str(error)))
                return
            except trio.BrokenResourceError:
                return
            if payload is None:
                return
            try:
                message = client_decoder.decode(payload)
            except msgspec.DecodeError as error:
                await self._outbox_send.send(Error(request_id=None, code="invalid_message", message=str(error)))
                continue
            match message:
                case Hello(protocol_version=version) if version == PROTOCOL_VERSION:
                    greeted = True
                    await self._outbox_send.send(welcome)
                case Hello(protocol_version=version):
                    reason = f"protocol version {version} is not supported; this server speaks {PROTOCOL_VERSION}"
                    await self._send_final(Error(request_id=None, code="unsupported_version", message=reason))
                    return
                case _ if not greeted:
                    reason = "the first message must be Hello"
                    await self._send_final(Error(request_id=None, code="protocol_error", message=reason))
                    return
                case Generate():
                    await self._start(nursery, message)
                case Abort(request_id=request_id):
                    engine_id = self._engine_ids.get(request_id)
                    if engine_id is not None:
                        self._engine.abort(engine_id)

    async def _start(self, nursery: trio.Nursery, request: Generate) -> None:
        def refuse(code: str, message: str) -> Error:
            return Error(request_id=request.request_id, code=code, message=message)

        if request.request_id in self._engine_ids:
            reason = f"request id {request.request_id} is already running on this connection"
            await self._outbox_send.send(refuse("duplicate_request", reason))
            return
        try:
            token_ids = prompt_token_ids(self._engine.tokenizer, request.prompt, request.prompt_token_ids)
            engine_id, stream = self._engine.submit(token_ids, request.sampling)
        except EngineFailedError as error:
            await self._outbox_send.send(refuse("engine_failed", str(error)))
            return
        except ValueError as error:
            await self._outbox_send.send(refuse("invalid_request", str(error)))
            return
        self._engine_ids[request.request_id] = engine_id
        nursery.start_soon(self._pump, request.request_id, stream)

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
                        )
                    )
                else:
                    await self._outbox_send.send(Tokens(request_id, event.token_ids, event.text, event.times))
        except EngineFailedError as error:
            await self._outbox_send.send(Error(request_id=request_id, code="engine_failed", message=str(error)))
        finally:
            self._engine_ids.pop(request_id, None)

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
                try:
                    await self._stream.send_all(frame(self._encoder.encode(message)))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    break
        connection_scope.cancel()
