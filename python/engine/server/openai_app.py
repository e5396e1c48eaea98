"""The OpenAI-compatible HTTP API over the engine: /v1/completions, /v1/chat/completions
(streaming SSE or not, `usage` filled in), /v1/models, /health and Prometheus /metrics.

Errors use OpenAI's body, `{"error": {"message", "type", "param", "code"}}`. A client that
disconnects aborts its request, which returns its KV blocks to the pool at once.
"""

import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import msgspec
import trio
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from engine.engine_core import EngineCore
from engine.request_stream import EngineFailedError, RequestOutcome, RequestStream
from engine.server.openai_schemas import ChatCompletionRequest, CompletionRequest, StreamOptions
from engine.tokenizer import ChatTemplateError

Body = TypeVar("Body", CompletionRequest, ChatCompletionRequest)

MAX_BODY_BYTES = 32 * 1024 * 1024
DEFAULT_COMPLETION_MAX_TOKENS = 16


class ApiError(Exception):
    def __init__(self, status: int, message: str, *, kind: str = "invalid_request_error", code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.code = status, message, kind, code


def _json(body: object, status: int = 200) -> Response:
    return Response(msgspec.json.encode(body), status_code=status, media_type="application/json")


def error_response(error: ApiError) -> Response:
    body = {"error": {"message": error.message, "type": error.kind, "param": None, "code": error.code}}
    return _json(body, error.status)


def _usage(counts: tuple[int, int]) -> dict[str, int]:
    prompt, completion = counts
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise ApiError(413, f"request body of {declared} bytes exceeds the limit of {MAX_BODY_BYTES}")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ApiError(413, f"request body exceeds the limit of {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _wait_for_disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


class OpenAIApi:
    def __init__(self, engine: EngineCore, model_name: str, registry: CollectorRegistry):
        self._engine = engine
        self._model_name = model_name
        self._registry = registry
        self._created = int(time.time())

    def app(self) -> Starlette:
        routes = [
            Route("/v1/completions", self._guarded(self.completions), methods=["POST"]),
            Route("/v1/chat/completions", self._guarded(self.chat_completions), methods=["POST"]),
            Route("/v1/models", self.models, methods=["GET"]),
            Route("/health", self.health, methods=["GET"]),
            Route("/metrics", self.metrics, methods=["GET"]),
        ]

        async def http_error(request: Request, exc: Exception) -> Response:
            status = exc.status_code if isinstance(exc, HTTPException) else 500
            message = exc.detail if isinstance(exc, HTTPException) else "internal error"
            return error_response(ApiError(status, f"{message}: {request.method} {request.url.path}"))

        return Starlette(routes=routes, exception_handlers={HTTPException: http_error})

    def _guarded(self, handler: Callable[[Request], Any]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            try:
                response: Response = await handler(request)
                return response
            except ApiError as error:
                return error_response(error)

        return endpoint

    async def models(self, request: Request) -> Response:
        model = {
            "id": self._model_name,
            "object": "model",
            "created": self._created,
            "owned_by": "servekit",
            "max_model_len": self._engine.max_model_len,
        }
        return _json({"object": "list", "data": [model]})

    async def health(self, request: Request) -> Response:
        if self._engine.failure is not None:
            return _json({"status": "failed", "error": self._engine.failure}, 503)
        return _json({"status": "ok"})

    async def metrics(self, request: Request) -> Response:
        self._engine.publish_load()
        return Response(generate_latest(self._registry), media_type=CONTENT_TYPE_LATEST)

    async def completions(self, request: Request) -> Response:
        body = self._decode(await _read_body(request), CompletionRequest)
        if isinstance(body.prompt, str):
            if not body.prompt:
                raise ApiError(400, "prompt must not be empty")
            prompt_ids = self._engine.tokenizer.encode(body.prompt)
        else:
            prompt_ids = body.prompt
        max_tokens = DEFAULT_COMPLETION_MAX_TOKENS if body.max_tokens is None else body.max_tokens
        request_id, stream = self._submit(body, prompt_ids, max_tokens)
        reply = _CompletionReply(f"cmpl-{uuid.uuid4().hex}", self._model_name, len(prompt_ids), chat=False)
        return await self._respond(request, request_id, stream, reply, body.stream, body.stream_options)

    async def chat_completions(self, request: Request) -> Response:
        body = self._decode(await _read_body(request), ChatCompletionRequest)
        tokenizer = self._engine.tokenizer
        try:
            text = tokenizer.apply_chat_template([m.as_template_input() for m in body.messages])
        except ChatTemplateError as error:
            raise ApiError(400, str(error)) from error
        prompt_ids = tokenizer.encode(text, add_special_tokens=False)
        requested = body.requested_max_tokens
        max_tokens = max(1, self._engine.max_model_len - len(prompt_ids)) if requested is None else requested
        request_id, stream = self._submit(body, prompt_ids, max_tokens)
        reply = _CompletionReply(f"chatcmpl-{uuid.uuid4().hex}", self._model_name, len(prompt_ids), chat=True)
        return await self._respond(request, request_id, stream, reply, body.stream, body.stream_options)

    def _decode(self, raw: bytes, kind: type[Body]) -> Body:
        try:
            body = msgspec.json.decode(raw, type=kind)
        except msgspec.DecodeError as error:
            raise ApiError(400, f"invalid request body: {error}") from error
        if body.model != self._model_name:
            raise ApiError(404, f"The model `{body.model}` does not exist.", code="model_not_found")
        try:
            body.check_supported()
        except ValueError as error:
            raise ApiError(400, str(error)) from error
        return body

    def _submit(
        self, body: CompletionRequest | ChatCompletionRequest, prompt_ids: list[int], max_tokens: int
    ) -> tuple[int, RequestStream]:
        try:
            return self._engine.submit(prompt_ids, body.sampling_params(max_tokens))
        except EngineFailedError as error:
            raise ApiError(503, str(error), kind="server_error", code="engine_failed") from error
        except ValueError as error:
            raise ApiError(400, str(error)) from error

    async def _respond(
        self,
        request: Request,
        request_id: int,
        stream: RequestStream,
        reply: "_CompletionReply",
        streaming: bool,
        options: StreamOptions | None,
    ) -> Response:
        if streaming:
            events = self._sse(request_id, stream, reply, options or StreamOptions())
            return StreamingResponse(events, media_type="text/event-stream")
        texts: list[str] = []
        outcome: RequestOutcome | None = None
        failure: str | None = None
        async with trio.open_nursery() as nursery:

            async def abort_on_disconnect() -> None:
                await _wait_for_disconnect(request)
                self._engine.abort(request_id)

            nursery.start_soon(abort_on_disconnect)
            try:
                async for event in stream:
                    texts.append(event.text)
                    if isinstance(event, RequestOutcome):
                        outcome = event
            except EngineFailedError as error:
                failure = str(error)
            nursery.cancel_scope.cancel()
        if outcome is None:
            raise ApiError(503, failure or "the request ended without an outcome", kind="server_error", code="engine_failed")
        return _json(reply.whole("".join(texts), outcome))

    async def _sse(
        self, request_id: int, stream: RequestStream, reply: "_CompletionReply", options: StreamOptions
    ) -> AsyncIterator[bytes]:
        finished = False
        num_output_tokens = 0

        def usage() -> dict[str, int] | None:
            return _usage((reply.num_prompt_tokens, num_output_tokens)) if options.continuous_usage_stats else None

        try:
            if reply.chat:
                yield reply.chunk({"role": "assistant", "content": ""}, None, usage())
            async for event in stream:
                if isinstance(event, RequestOutcome):
                    finished = True
                    num_output_tokens = event.num_output_tokens
                    yield reply.chunk(reply.delta(event.text), event.finish_reason, usage())
                    if options.include_usage:
                        counts = (event.num_prompt_tokens, event.num_output_tokens)
                        yield reply.event({**reply.header(), "choices": [], "usage": _usage(counts)})
                else:
                    num_output_tokens += len(event.token_ids)
                    yield reply.chunk(reply.delta(event.text), None, usage())
        except EngineFailedError as error:
            finished = True
            body = {"error": {"message": str(error), "type": "server_error", "param": None, "code": "engine_failed"}}
            yield reply.event(body)
        finally:
            if not finished:
                self._engine.abort(request_id)
        yield b"data: [DONE]\n\n"


class _CompletionReply:
    """Shapes the response bodies of one completion or chat completion."""

    def __init__(self, completion_id: str, model: str, num_prompt_tokens: int, *, chat: bool):
        self.chat = chat
        self.num_prompt_tokens = num_prompt_tokens
        self._id = completion_id
        self._model = model
        self._created = int(time.time())

    def header(self) -> dict[str, Any]:
        kind = "chat.completion.chunk" if self.chat else "text_completion"
        return {"id": self._id, "object": kind, "created": self._created, "model": self._model}

    def delta(self, text: str) -> dict[str, str] | str:
        return {"content": text} if self.chat else text

    def chunk(self, delta: dict[str, str] | str, finish_reason: str | None, usage: dict[str, int] | None) -> bytes:
        choice: dict[str, Any] = {"index": 0, "finish_reason": finish_reason}
        if self.chat:
            choice["delta"] = delta
            choice["logprobs"] = None
        else:
            choice["text"] = delta
            choice["logprobs"] = None
        body: dict[str, Any] = {**self.header(), "choices": [choice]}
        if usage is not None:
            body["usage"] = usage
        return self.event(body)

    @staticmethod
    def event(body: object) -> bytes:
        return b"data: " + msgspec.json.encode(body) + b"\n\n"

    def whole(self, text: str, outcome: RequestOutcome) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0, "finish_reason": outcome.finish_reason, "logprobs": None}
        if self.chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        return {
            "id": self._id,
            "object": "chat.completion" if self.chat else "text_completion",
            "created": self._created,
            "model": self._model,
            "choices": [choice],
            "usage": _usage((outcome.num_prompt_tokens, outcome.num_output_tokens)),
        }
