"""Any OpenAI-compatible server (vLLM, SGLang, TGI's OpenAI API, this project's engine, OpenAI):
streaming SSE over `/v1/completions` or `/v1/chat/completions`.

Each event's time is when the bytes carrying its first line were received. Output length is
enforced with `max_tokens` plus `ignore_eos` (a vLLM/SGLang extension; turn it off for servers that
reject unknown fields). Tokens per event: see `event_tokens`. Connections are kept alive and never
limited in number, so no request waits for a free one (the load stays open-loop).
"""

import json
import math
from contextlib import aclosing

import msgspec
import trio
from tokenizers import Tokenizer

from metron.targets.base import ChatMessage, StreamRequest, Target, TargetError, TargetUnreachable, TokenSink
from metron.targets.event_tokens import StreamEvent, tokens_per_event
from metron.targets.http_client import ConnectError, HttpClient, HttpError
from metron.targets.sse import EventStreamParser

ENDPOINTS = ("completions", "chat")
_MAX_ERROR_BODY = 2000


class OpenAIConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`url`: the server's base URL, with or without `/v1`. `continuous_usage` asks vLLM-style
    servers for usage in every event (exact token counts per event); `logprobs` asks for one
    logprob per token (exact counts from any server that supports them, at some server cost)."""

    url: str
    model: str
    endpoint: str = "completions"
    ignore_eos: bool = True
    include_usage: bool = True
    continuous_usage: bool = True
    logprobs: bool = False
    temperature: float = 0.0
    extra_body: dict[str, object] = {}
    connect_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"the target URL must start with http:// or https://, got {self.url!r}")
        if not self.model:
            raise ValueError("the model name must not be empty")
        if self.endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {self.endpoint!r}; choose one of {', '.join(ENDPOINTS)}")
        if not (self.connect_timeout_s > 0 and math.isfinite(self.connect_timeout_s)):
            raise ValueError(f"connect_timeout_s must be positive, got {self.connect_timeout_s}")

    @property
    def base_url(self) -> str:
        base = self.url.rstrip("/")
        return base if base.endswith("/v1") else base + "/v1"


def _error_message(status: int, body: bytes) -> str:
    text = body[:_MAX_ERROR_BODY].decode(errors="replace").strip()
    try:
        parsed = json.loads(text)
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
            text = str(parsed["error"].get("message", text))
        elif isinstance(parsed, dict) and "message" in parsed:
            text = str(parsed["message"])
    except json.JSONDecodeError:
        pass
    return f"HTTP {status}: {text or 'no body'}"


class OpenAITarget(Target):
    def __init__(self, config: OpenAIConfig, api_key: str | None = None, tokenizer: Tokenizer | None = None) -> None:
        self.config = config
        self.tokenizer = tokenizer
        headers = {"User-Agent": "metron", "Accept": "text/event-stream, application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._client = HttpClient(config.base_url, headers, config.connect_timeout_s)
        self._encoder = msgspec.json.Encoder()

    def describe(self) -> dict[str, object]:
        described = msgspec.to_builtins(self.config)
        described["target"] = "openai"
        described["token_counting_tokenizer"] = self.tokenizer is not None
        return described

    async def aclose(self) -> None:
        await self._client.aclose()

    async def check(self) -> None:
        timeout = self.config.connect_timeout_s
        try:
            with trio.fail_after(timeout):
                async with self._client.request("GET", "/models") as response:
                    status, content = response.status, await response.read()
        except trio.TooSlowError:
            raise TargetUnreachable(f"{self.config.base_url} gave no HTTP answer within {timeout:g} s") from None
        except ConnectError as error:
            raise TargetUnreachable(f"cannot reach {self.config.base_url}: {error}") from error
        except HttpError as error:
            raise TargetUnreachable(f"{self.config.base_url} does not answer HTTP: {error}") from error
        if status in (401, 403):
            raise TargetError(_error_message(status, content) + " (check the API key)")
        if status != 200:
            return  # not every server lists models; the first request will tell
        try:
            entries = {entry["id"]: entry for entry in json.loads(content).get("data", [])}
        except (ValueError, AttributeError, KeyError, TypeError):
            return
        served = list(entries)
        length = entries.get(self.config.model, {}).get("max_model_len")
        self.max_model_len = length if isinstance(length, int) else None  # vLLM's field
        if served and self.config.model not in served:
            raise TargetError(
                f"model {self.config.model!r} is not served at {self.config.base_url}; it serves {served}"
            )

    def _body(self, request: StreamRequest) -> dict[str, object]:
        config = self.config
        body: dict[str, object] = {
            "model": config.model,
            "max_tokens": request.output_tokens,
            "temperature": config.temperature,
            "stream": True,
        }
        if config.endpoint == "chat":
            messages = request.messages or (ChatMessage("user", request.prompt),)
            body["messages"] = [{"role": m.role, "content": m.content} for m in messages]
        else:
            body["prompt"] = request.prompt
        if config.ignore_eos:
            body["ignore_eos"] = True
        if config.include_usage or config.continuous_usage:
            options: dict[str, bool] = {"include_usage": True}
            if config.continuous_usage:
                options["continuous_usage_stats"] = True
            body["stream_options"] = options
        if config.logprobs:
            body["logprobs"] = True if config.endpoint == "chat" else 1
        body.update(config.extra_body)
        return body

    async def stream(self, request: StreamRequest, sink: TokenSink) -> None:
        path = "/chat/completions" if self.config.endpoint == "chat" else "/completions"
        clock_offset = trio.current_time() - sink.now()
        events: list[StreamEvent] = []
        final_tokens: int | None = None
        prompt_tokens: int | None = None
        cached_tokens: int | None = None
        done = False
        try:
            async with self._client.request(
                "POST", path, self._encoder.encode(self._body(request)), {"X-Request-Id": f"metron-{request.id}"}
            ) as response:
                if response.status != 200:
                    raise TargetError(_error_message(response.status, await response.read()))
                parser = EventStreamParser()
                async with aclosing(response.lines()) as lines:
                    async for line, received in lines:  # to the end, so the connection is reused
                        event = parser.feed(line, received - clock_offset)
                        if event is None or done:
                            continue
                        if event.data.strip() == "[DONE]":
                            done = True
                            continue
                        stream_event, usage = self._parse(event.data, event.received_s)
                        if usage.get("completion_tokens") is not None:
                            final_tokens = usage["completion_tokens"]
                        if usage.get("prompt_tokens") is not None:
                            prompt_tokens = usage["prompt_tokens"]
                        if usage.get("cached_tokens") is not None:
                            cached_tokens = usage["cached_tokens"]
                        if stream_event is not None:
                            events.append(stream_event)
        except HttpError as error:
            raise TargetError(f"connection failed: {error}") from error
        finally:
            self._report(events, final_tokens, sink, allow_failure=not done)
            if prompt_tokens is not None:
                sink.prompt_tokens(prompt_tokens)
            if cached_tokens is not None:
                sink.cached_prompt_tokens(cached_tokens)
        if not done:
            raise TargetError("the stream closed before [DONE]")

    def _report(
        self, events: list[StreamEvent], final_tokens: int | None, sink: TokenSink, allow_failure: bool
    ) -> None:
        try:
            counts = tokens_per_event(events, final_tokens, self.tokenizer)
        except TargetError:
            if allow_failure:
                return  # the request failed anyway; its own error is the one to report
            raise
        for event, count in zip(events, counts, strict=True):
            if count > 0:
                sink.tokens(count, at=event.received_s)
            if event.text:
                sink.answer_text(event.text)

    def _parse(self, data: str, received_s: float) -> tuple[StreamEvent | None, dict[str, int]]:
        """(the event's tokens, its usage's integer counts) of one SSE data payload; `cached_tokens`
        is the usage's `prompt_tokens_details.cached_tokens` (vLLM's, OpenAI's and the engine's)."""
        try:
            payload = json.loads(data)
        except json.JSONDecodeError as error:
            raise TargetError(f"the server sent an event that is not JSON: {data[:200]!r}") from error
        if not isinstance(payload, dict):
            raise TargetError(f"the server sent an unexpected event: {data[:200]!r}")
        if "error" in payload:
            error = payload["error"]
            message = error.get("message", error) if isinstance(error, dict) else error
            raise TargetError(f"the server reported an error mid-stream: {message}")
        usage = payload.get("usage")
        counts = {k: v for k, v in usage.items() if isinstance(v, int)} if isinstance(usage, dict) else {}
        details = usage.get("prompt_tokens_details") if isinstance(usage, dict) else None
        if isinstance(details, dict) and isinstance(details.get("cached_tokens"), int):
            counts["cached_tokens"] = details["cached_tokens"]
        usage_tokens = counts.get("completion_tokens")
        choices = payload.get("choices") or []
        if not choices:
            return None, counts
        choice = choices[0]
        if self.config.endpoint == "chat":
            text = (choice.get("delta") or {}).get("content") or ""
            logprobs = (choice.get("logprobs") or {}).get("content")
        else:
            text = choice.get("text") or ""
            logprobs = (choice.get("logprobs") or {}).get("tokens")
        event = StreamEvent(
            received_s=received_s,
            text=text,
            completion_tokens=usage_tokens,
            logprob_tokens=len(logprobs) if isinstance(logprobs, list) else None,
        )
        if not text and usage_tokens is None and event.logprob_tokens is None:
            return None, counts  # a role-only or empty event carries no tokens
        return event, counts
