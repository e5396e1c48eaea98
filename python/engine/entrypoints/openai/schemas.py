"""OpenAI request bodies, decoded as vLLM's server decodes them: `null` stands for a field's
default wherever OpenAI allows it, a field this server does not know is ignored (the caller logs
it), and a wrong type is a 400 that says where. Values are checked by `SamplingParams.validate`
and by the checks here (which name the field)."""

from typing import Any, Literal

import msgspec

from engine.wire.sampling_params import SamplingParams

DEFAULT_COMPLETION_MAX_TOKENS = 16
MAX_CHOICES = 128


class StreamOptions(msgspec.Struct):
    include_usage: bool | None = None
    # vLLM's extension: usage in every chunk, so a client can count tokens per event.
    continuous_usage_stats: bool | None = None


class _Sampling(msgspec.Struct, kw_only=True):
    model: str | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    min_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    n: int | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    stop_token_ids: list[int] | None = None
    seed: int | None = None
    ignore_eos: bool | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    repetition_penalty: float | None = None
    logit_bias: dict[str, float] | None = None
    skip_special_tokens: bool | None = None
    return_tokens_as_token_ids: bool | None = None
    user: str | None = None

    @property
    def num_choices(self) -> int:
        return 1 if self.n is None else self.n

    @property
    def is_streaming(self) -> bool:
        return bool(self.stream)

    def check(self) -> None:
        """Raises ValueError for values no request may have, naming the field."""
        if not 1 <= self.num_choices <= MAX_CHOICES:
            raise ValueError(f"n must be in [1, {MAX_CHOICES}], got {self.n}")
        if self.max_tokens is not None and self.max_completion_tokens is not None:
            raise ValueError("give max_tokens or max_completion_tokens, not both")
        if self.stream_options is not None and not self.stream:
            raise ValueError("stream_options is only allowed with stream=true")

    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    def sampling_params(self, max_tokens: int, *, logprobs: int | None, prompt_logprobs: int | None) -> SamplingParams:
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return SamplingParams(
            max_tokens=max_tokens,
            min_tokens=_or(self.min_tokens, 0),
            temperature=_or(self.temperature, 1.0),
            top_k=_or(self.top_k, 0),
            top_p=_or(self.top_p, 1.0),
            min_p=_or(self.min_p, 0.0),
            seed=self.seed,
            presence_penalty=_or(self.presence_penalty, 0.0),
            frequency_penalty=_or(self.frequency_penalty, 0.0),
            repetition_penalty=_or(self.repetition_penalty, 1.0),
            logit_bias=_logit_bias(self.logit_bias),
            stop_token_ids=list(self.stop_token_ids or []),
            stop=stop,
            ignore_eos=_or(self.ignore_eos, False),
            logprobs=logprobs,
            prompt_logprobs=prompt_logprobs,
            skip_special_tokens=_or(self.skip_special_tokens, True),
        )


class CompletionRequest(_Sampling, kw_only=True):
    """`prompt`: a text, a list of texts, a list of token ids, or a list of those lists."""

    prompt: str | list[str | int | list[int]]
    echo: bool | None = None
    logprobs: int | None = None
    best_of: int | None = None
    suffix: str | None = None

    def check(self) -> None:
        super().check()
        if self.suffix:
            raise ValueError("suffix is not supported")
        if self.best_of is not None and self.best_of < self.num_choices:
            raise ValueError(f"best_of must be at least n ({self.num_choices}), got {self.best_of}")
        if self.best_of is not None and self.best_of > MAX_CHOICES:
            raise ValueError(f"best_of must be at most {MAX_CHOICES}, got {self.best_of}")
        if self.stream and self.num_samples != self.num_choices:
            raise ValueError("best_of must equal n when streaming")

    @property
    def num_samples(self) -> int:
        return self.num_choices if self.best_of is None else self.best_of

    def prompts(self) -> list[str | list[int]]:
        """The prompts as texts or token-id lists; raises ValueError for a malformed mix."""
        prompt = self.prompt
        if isinstance(prompt, str):
            return [prompt]
        if not prompt:
            raise ValueError("prompt must not be empty")
        if all(isinstance(item, int) for item in prompt):
            return [list(prompt)]  # type: ignore[arg-type]
        if all(isinstance(item, str) for item in prompt) or all(isinstance(item, list) for item in prompt):
            return list(prompt)  # type: ignore[arg-type]
        raise ValueError("prompt must be a text, a list of texts, a list of token ids or a list of token-id lists")


class ContentPart(msgspec.Struct):
    type: str
    text: str | None = None


class ChatMessage(msgspec.Struct):
    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None

    def as_template_input(self) -> dict[str, Any]:
        if self.content is None or isinstance(self.content, str):
            content = self.content or ""
        else:
            kinds = {part.type for part in self.content} - {"text"}
            if kinds:
                raise ValueError(f"only text content is supported, got {', '.join(sorted(kinds))}")
            content = "".join(part.text or "" for part in self.content)
        return {"role": self.role, "content": content}


class ChatCompletionRequest(_Sampling, kw_only=True):
    messages: list[ChatMessage]
    logprobs: bool | None = None
    top_logprobs: int | None = None
    add_generation_prompt: bool | None = None

    def check(self) -> None:
        super().check()
        if not self.messages:
            raise ValueError("messages must not be empty")
        if self.top_logprobs is not None and not self.logprobs:
            raise ValueError("top_logprobs needs logprobs=true")


class TokenizeRequest(msgspec.Struct, kw_only=True):
    """vLLM's /tokenize: a `prompt`, or chat `messages` rendered with the chat template."""

    model: str | None = None
    prompt: str | None = None
    messages: list[ChatMessage] | None = None
    add_special_tokens: bool | None = None
    add_generation_prompt: bool | None = None
    return_token_strs: bool | None = None


class DetokenizeRequest(msgspec.Struct, kw_only=True):
    model: str | None = None
    tokens: list[int]


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


def _logit_bias(bias: dict[str, float] | None) -> dict[int, float]:
    parsed = {}
    for key, value in (bias or {}).items():
        try:
            parsed[int(key)] = value
        except ValueError:
            raise ValueError(f"logit_bias keys must be token ids, got {key!r}") from None
    return parsed
