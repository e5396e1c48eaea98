"""The OpenAI-compatible HTTP API over the engine, as vLLM serves it: /v1/completions and
/v1/chat/completions (streaming SSE or not, `n`, `best_of`, logprobs, echo, a list of prompts),
/v1/models, /tokenize, /detokenize, /version, /health and Prometheus /metrics.

Errors use OpenAI's body, `{"error": {"message", "type", "param", "code"}}`. A request body must
arrive within `body_timeout_s`. Prompts are tokenized off the event loop. A client that
disconnects aborts its requests, which returns their KV blocks to the pool at once; a streaming
call submits its requests only once its response has started, so no request outlives a client
that closed before reading.
"""

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
import trio
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from engine.frontend.engine_client import EngineClient
from engine.errors import EngineFailedError, EngineUnavailableError
from engine.entrypoints.openai.completion_call import CompletionCall, Prompt, Sample
from engine.entrypoints.openai.replies import ReplyShape
from engine.entrypoints.openai.schemas import (
    DEFAULT_COMPLETION_MAX_TOKENS,
    ChatCompletionRequest,
    CompletionRequest,
    DetokenizeRequest,
    StreamOptions,
    TokenizeRequest,
)
from engine.entrypoints.prompt import PromptTokenizer
from engine.frontend.tokenizer import ChatTemplateError

log = logging.getLogger("engine.http")

Body = TypeVar("Body", CompletionRequest, ChatCompletionRequest, TokenizeRequest, DetokenizeRequest)

MAX_BODY_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ApiConfig:
    model_name: str
    version: str = "0"
    body_timeout_s: float = 30.0
    max_body_bytes: int = MAX_BODY_BYTES


class ApiError(Exception):
    def __init__(self, status: int, message: str, *, kind: str = "invalid_request_error", code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.code = status, message, kind, code


class ClientGone(Exception):
    """The client disconnected before its reply was ready; nobody reads what is sent."""


def _json(body: object, status: int = 200) -> Response:
    return Response(msgspec.json.encode(body), status_code=status, media_type="application/json")


def error_response(error: ApiError) -> Response:
    body = {"error": {"message": error.message, "type": error.kind, "param": None, "code": error.code}}
    return _json(body, error.status)


def _engine_error(error: Exception) -> ApiError:
    if isinstance(error, EngineUnavailableError):
        return ApiError(503, str(error), kind="server_error", code="unavailable")
    if isinstance(error, EngineFailedError):
        return ApiError(503, str(error), kind="server_error", code="engine_failed")
    return ApiError(400, str(error))


async def _wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class OpenAIApi:
    def __init__(self, engine: EngineClient, prompts: PromptTokenizer, config: ApiConfig, registry: CollectorRegistry):
        self._engine = engine
        self._prompts = prompts
        self._tokenizer = prompts.tokenizer
        self._config = config
        self._registry = registry
        self._created = int(time.time())

    def app(self) -> Starlette:
        routes = [
            Route("/v1/completions", self._guarded(self.completions), methods=["POST"]),
            Route("/v1/chat/completions", self._guarded(self.chat_completions), methods=["POST"]),
            Route("/v1/models", self.models, methods=["GET"]),
            Route("/tokenize", self._guarded(self.tokenize), methods=["POST"]),
            Route("/detokenize", self._guarded(self.detokenize), methods=["POST"]),
            Route("/version", self.version, methods=["GET"]),
            Route("/health", self.health, methods=["GET"]),
            Route("/metrics", self.metrics, methods=["GET"]),
        ]

        async def http_error(request: Request, exc: Exception) -> Response:
            status = exc.status_code if isinstance(exc, HTTPException) else 500
            message = exc.detail if isinstance(exc, HTTPException) else "internal error"
            return error_response(ApiError(status, f"{message}: {request.method} {request.url.path}"))

        return Starlette(routes=routes, exception_handlers={HTTPException: http_error})

    def _guarded(self, handler: Callable[[Request], Any]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> "Response | _EventStream":
            try:
                response: Response | _EventStream = await handler(request)
                return response
            except ApiError as error:
                return error_response(error)
            except (ClientDisconnect, ClientGone):
                return Response(status_code=499)

        return endpoint

    # ----- plain endpoints -----

    async def models(self, request: Request) -> Response:
        model = {
            "id": self._config.model_name,
            "object": "model",
            "created": self._created,
            "owned_by": "servekit",
            "root": self._config.model_name,
            "parent": None,
            "max_model_len": self._engine.max_model_len,
        }
        return _json({"object": "list", "data": [model]})

    async def health(self, request: Request) -> Response:
        if self._engine.failure is not None:
            return _json({"status": "failed", "error": self._engine.failure}, 503)
        if self._engine.is_draining:
            return _json({"status": "draining"}, 503)
        return _json({"status": "ok"})

    async def version(self, request: Request) -> Response:
        return _json({"version": self._config.version})

    async def metrics(self, request: Request) -> Response:
        self._engine.publish_load()
        return Response(generate_latest(self._registry), media_type=CONTENT_TYPE_LATEST)

    async def tokenize(self, request: Request) -> Response:
        body = self._decode(await self._read_body(request), TokenizeRequest, request.url.path)
        try:
            if (body.prompt is None) == (body.messages is None):
                raise ValueError("give exactly one of prompt and messages")
            if body.messages is not None:
                messages = [m.as_template_input() for m in body.messages]
                add_prompt = True if body.add_generation_prompt is None else body.add_generation_prompt
                ids = await self._prompts.encode_chat(messages, add_generation_prompt=add_prompt)
            else:
                add_special = True if body.add_special_tokens is None else body.add_special_tokens
                ids = await self._prompts.encode(body.prompt or "", add_special_tokens=add_special)
        except ValueError as error:
            raise ApiError(400, str(error)) from error
        strs = [self._tokenizer.token_text(t) for t in ids] if body.return_token_strs else None
        return _json({"count": len(ids), "max_model_len": self._engine.max_model_len, "tokens": ids,
                      "token_strs": strs})

    async def detokenize(self, request: Request) -> Response:
        body = self._decode(await self._read_body(request), DetokenizeRequest, request.url.path)
        vocab_size = self._engine.model.vocab_size
        bad = next((t for t in body.tokens if not 0 <= t < vocab_size), None)
        if bad is not None:
            raise ApiError(400, f"token id {bad} is outside the vocabulary (size {vocab_size})")
        return _json({"prompt": await self._prompts.decode(body.tokens)})

    # ----- completions -----

    async def completions(self, request: Request) -> "Response | _EventStream":
        body = self._decode(await self._read_body(request), CompletionRequest, request.url.path)
        try:
            body.check()
            prompts = [await self._prompt(p) for p in body.prompts()]
        except ValueError as error:
            raise ApiError(400, str(error)) from error
        echo = bool(body.echo)
        requested = body.requested_max_tokens()
        max_tokens = DEFAULT_COMPLETION_MAX_TOKENS if requested is None else requested
        # best_of ranks samples by their cumulative logprob, so it needs the chosen tokens' logprobs.
        logprobs = body.logprobs if body.logprobs is not None else (0 if body.num_samples > body.num_choices else None)
        prompt_logprobs = body.logprobs if echo and body.logprobs is not None else None
        params = self._params(body, max_tokens, logprobs, prompt_logprobs)
        shape = self._shape(body, "cmpl", chat=False, logprobs=body.logprobs, echo=echo)
        call = CompletionCall(self._engine, prompts, params, body.num_samples)
        echo_texts = [await self._echo_text(p) for p in prompts] if echo else []
        if body.is_streaming:
            return _EventStream(call, shape, body.stream_options or StreamOptions(), echo_texts)
        samples = await self._complete(request, call)
        return _json(shape.whole(prompts, _best(samples, body.num_choices), samples, echo_texts))

    async def chat_completions(self, request: Request) -> "Response | _EventStream":
        body = self._decode(await self._read_body(request), ChatCompletionRequest, request.url.path)
        try:
            body.check()
            messages = [m.as_template_input() for m in body.messages]
            add_prompt = True if body.add_generation_prompt is None else body.add_generation_prompt
            prompt = Prompt(await self._prompts.encode_chat(messages, add_generation_prompt=add_prompt))
        except ChatTemplateError as error:
            raise ApiError(400, str(error)) from error
        except ValueError as error:
            raise ApiError(400, str(error)) from error
        requested = body.requested_max_tokens()
        max_tokens = max(1, self._engine.max_model_len - len(prompt.token_ids)) if requested is None else requested
        logprobs = (body.top_logprobs or 0) if body.logprobs else None
        params = self._params(body, max_tokens, logprobs, None)
        shape = self._shape(body, "chatcmpl", chat=True, logprobs=logprobs, echo=False)
        call = CompletionCall(self._engine, [prompt], params, body.num_choices)
        if body.is_streaming:
            return _EventStream(call, shape, body.stream_options or StreamOptions(), [])
        samples = await self._complete(request, call)
        return _json(shape.whole([prompt], samples, samples, []))

    def _params(
        self, body: CompletionRequest | ChatCompletionRequest, max_tokens: int, logprobs: int | None,
        prompt_logprobs: int | None,
    ) -> Any:
        try:
            params = body.sampling_params(max_tokens, logprobs=logprobs, prompt_logprobs=prompt_logprobs)
            params.validate(self._engine.model.vocab_size)
        except ValueError as error:
            raise ApiError(400, str(error)) from error
        return params

    def _shape(
        self, body: CompletionRequest | ChatCompletionRequest, prefix: str, *, chat: bool, logprobs: int | None,
        echo: bool,
    ) -> ReplyShape:
        return ReplyShape(
            reply_id=f"{prefix}-{uuid.uuid4().hex}",
            model=self._config.model_name,
            tokenizer=self._tokenizer,
            chat=chat,
            num_choices=body.num_choices,
            logprobs=logprobs,
            echo=echo,
            report_cached_tokens=self._engine.config.enable_prefix_caching,
            tokens_as_ids=bool(body.return_tokens_as_token_ids),
        )

    async def _prompt(self, prompt: str | list[int]) -> Prompt:
        if isinstance(prompt, str):
            return Prompt(await self._prompts.encode(prompt), prompt)
        return Prompt(list(prompt))

    async def _echo_text(self, prompt: Prompt) -> str:
        if prompt.text is not None:
            return prompt.text
        return await self._prompts.decode(prompt.token_ids)

    async def _complete(self, request: Request, call: CompletionCall) -> list[Sample]:
        """Runs every sample to its end; raises ClientGone if the client disconnects first."""
        disconnected = False
        try:
            try:
                call.submit_first()
            except (ValueError, EngineFailedError) as error:
                raise _engine_error(error) from error
            async with trio.open_nursery() as nursery:

                async def watch() -> None:
                    nonlocal disconnected
                    await _wait_for_disconnect(request.receive)
                    disconnected = True
                    nursery.cancel_scope.cancel()

                nursery.start_soon(watch)
                async with call.events() as events:
                    async for sample, event in events:
                        sample.record(event)
                nursery.cancel_scope.cancel()
        finally:
            call.abort()
        if disconnected:
            raise ClientGone()
        failed = next((s for s in call.samples if s.failure is not None or s.outcome is None), None)
        if failed is not None:
            message = failed.failure or "the request ended without an outcome"
            raise ApiError(503, message, kind="server_error", code="engine_failed")
        return call.samples

    # ----- request bodies -----

    async def _read_body(self, request: Request) -> bytearray:
        limit = self._config.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise ApiError(413, f"request body of {declared} bytes exceeds the limit of {limit}")
        body = bytearray()  # grown chunk by chunk: no one long copy at the end
        with trio.move_on_after(self._config.body_timeout_s) as waited:
            async for chunk in request.stream():
                if len(body) + len(chunk) > limit:
                    raise ApiError(413, f"request body exceeds the limit of {limit} bytes")
                body += chunk
        if waited.cancelled_caught:
            raise ApiError(408, f"the request body did not arrive within {self._config.body_timeout_s:g} s")
        return body

    def _decode(self, raw: bytearray, kind: type[Body], path: str) -> Body:
        try:
            fields = msgspec.json.decode(raw, type=dict[str, msgspec.Raw])
            if kind in (CompletionRequest, ChatCompletionRequest):
                self._prompts.check_json_size(fields.get("prompt"), fields.get("messages"))
            body = msgspec.json.decode(raw, type=kind)
        except msgspec.DecodeError as error:
            raise ApiError(400, f"invalid request body: {error}") from error
        except ValueError as error:
            raise ApiError(400, str(error)) from error
        ignored = sorted(set(fields) - set(kind.__struct_fields__))
        if ignored:
            log.warning("%s: ignoring fields this server does not support: %s", path, ", ".join(ignored))
        if body.model is not None and body.model != self._config.model_name:
            raise ApiError(404, f"The model `{body.model}` does not exist.", code="model_not_found")
        return body


def _best(samples: list[Sample], num_choices: int) -> list[Sample]:
    """Per prompt, the `num_choices` samples of highest cumulative logprob (all of them, in
    order, without best_of)."""
    by_prompt: dict[int, list[Sample]] = {}
    for sample in samples:
        by_prompt.setdefault(sample.prompt_index, []).append(sample)
    chosen = []
    for prompt_samples in by_prompt.values():
        if len(prompt_samples) > num_choices:
            prompt_samples = sorted(prompt_samples, key=lambda s: s.cumulative_logprob, reverse=True)[:num_choices]
        chosen.extend(prompt_samples)
    return chosen


class _EventStream:
    """A streaming reply: server-sent events, one per sample event, then `data: [DONE]`. The
    call's requests are submitted once the response has started and aborted when it ends early
    (the client disconnected or stopped reading)."""

    def __init__(self, call: CompletionCall, shape: ReplyShape, options: StreamOptions, echo_texts: list[str]):
        self._call = call
        self._shape = shape
        self._options = options
        self._echo_texts = echo_texts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]
        try:
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            async with trio.open_nursery() as nursery:

                async def watch() -> None:
                    await _wait_for_disconnect(receive)
                    nursery.cancel_scope.cancel()

                nursery.start_soon(watch)
                await self._stream(send)
                nursery.cancel_scope.cancel()
        except OSError:
            pass  # the client went away while we wrote
        finally:
            self._call.abort()

    async def _stream(self, send: Send) -> None:
        async def write(data: bytes) -> None:
            await send({"type": "http.response.body", "body": data, "more_body": True})

        call, shape = self._call, self._shape
        try:
            call.submit_first()
        except (ValueError, EngineFailedError) as error:
            api_error = _engine_error(error)
            await write(shape.error_event(api_error.message, api_error.code or "invalid_request"))
            await write(b"data: [DONE]\n\n")
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        for chunk in shape.role_chunks(len(call.samples)):
            await write(chunk)
        continuous = bool(self._options.continuous_usage_stats)
        echoed: set[int] = set()
        async with call.events() as events:
            async for sample, event in events:
                sample.record(event)
                if isinstance(event, EngineFailedError):
                    await write(shape.error_event(str(event), "engine_failed"))
                    continue
                echo_text = None
                if shape.echo and id(sample) not in echoed:
                    echoed.add(id(sample))
                    echo_text = self._echo_texts[sample.prompt_index]
                usage = shape.usage(call.prompts, call.samples, _num_tokens(call)) if continuous else None
                await write(shape.chunk(sample, event, echo_text, usage))
        if self._options.include_usage:
            await write(shape.usage_chunk(shape.usage(call.prompts, call.samples, _num_tokens(call))))
        await write(b"data: [DONE]\n\n")
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _num_tokens(call: CompletionCall) -> int:
    """Output tokens the call has delivered so far."""
    return sum(len(s.token_ids) for s in call.samples)
