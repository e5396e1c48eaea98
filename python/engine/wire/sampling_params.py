"""How one request's tokens are chosen and when it stops."""

import math

import msgspec

# Temperatures below this are greedy (vLLM's rule): dividing logits by a tinier one overflows.
GREEDY_BELOW_TEMPERATURE = 1e-5
# The most alternatives a request may ask for per token (vLLM's default `max_logprobs`).
MAX_LOGPROBS = 20
MAX_LOGIT_BIAS = 100.0


class SamplingParams(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """`temperature == 0` (or below 1e-5) means greedy. `top_k <= 0`, `top_p == 1` and
    `min_p == 0` disable those filters.

    Logits are processed in vLLM's order: `logit_bias` is added, EOS and `stop_token_ids` are
    masked until `min_tokens` tokens were produced, then the penalties apply (`repetition_penalty`
    over prompt and output tokens, as Hugging Face's processor; `frequency_penalty` and
    `presence_penalty` over output tokens, as OpenAI defines them). Greedy takes the argmax of
    the processed logits; sampling divides them by the temperature, applies `min_p`, then
    `top_k` and `top_p`.

    `logprobs` (when not None) returns, for every output token, its log-probability and the
    `logprobs` most likely alternatives; `prompt_logprobs` the same for every prompt token after
    the first. Both are of the model's raw distribution, before any processing (vLLM's default).

    `stop_token_ids` and `stop` strings end a request (the stop string itself is not returned),
    and so does the model's EOS token unless `ignore_eos`; none of them before `min_tokens`.
    `skip_special_tokens` leaves special tokens out of the text (the token ids keep them).
    """

    max_tokens: int = 16
    min_tokens: int = 0
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    logit_bias: dict[int, float] = {}
    stop_token_ids: list[int] = []
    stop: list[str] = []
    ignore_eos: bool = False
    logprobs: int | None = None
    prompt_logprobs: int | None = None
    skip_special_tokens: bool = True

    @property
    def is_greedy(self) -> bool:
        return self.temperature < GREEDY_BELOW_TEMPERATURE

    @property
    def has_penalties(self) -> bool:
        return bool(self.presence_penalty or self.frequency_penalty or self.repetition_penalty != 1.0)

    def validate(self, vocab_size: int) -> None:
        """Raises ValueError naming the first invalid field."""
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {self.max_tokens}")
        if not 0 <= self.min_tokens <= self.max_tokens:
            raise ValueError(f"min_tokens must be in [0, max_tokens={self.max_tokens}], got {self.min_tokens}")
        _check_range("temperature", self.temperature, 0.0, 100.0)
        if self.top_k < 0 and self.top_k != -1:
            raise ValueError(f"top_k must be -1, 0 (disabled) or positive, got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        _check_range("min_p", self.min_p, 0.0, 1.0)
        if self.seed is not None and not 0 <= self.seed < 2**63:
            raise ValueError(f"seed must be in [0, 2**63), got {self.seed}")
        _check_range("presence_penalty", self.presence_penalty, -2.0, 2.0)
        _check_range("frequency_penalty", self.frequency_penalty, -2.0, 2.0)
        if not (math.isfinite(self.repetition_penalty) and 0.0 < self.repetition_penalty <= 100.0):
            raise ValueError(f"repetition_penalty must be in (0, 100], got {self.repetition_penalty}")
        for token, bias in self.logit_bias.items():
            _check_token("logit_bias token id", token, vocab_size)
            _check_range(f"logit_bias of token {token}", bias, -MAX_LOGIT_BIAS, MAX_LOGIT_BIAS)
        for name, count in (("logprobs", self.logprobs), ("prompt_logprobs", self.prompt_logprobs)):
            if count is not None and not 0 <= count <= MAX_LOGPROBS:
                raise ValueError(f"{name} must be in [0, {MAX_LOGPROBS}], got {count}")
        for token in self.stop_token_ids:
            _check_token("stop token id", token, vocab_size)
        for text in self.stop:
            if not text:
                raise ValueError("stop strings must not be empty")


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if not (math.isfinite(value) and low <= value <= high):
        raise ValueError(f"{name} must be in [{low:g}, {high:g}], got {value}")


def _check_token(what: str, token: int, vocab_size: int) -> None:
    if not 0 <= token < vocab_size:
        raise ValueError(f"{what} {token} is outside the vocabulary (size {vocab_size})")
