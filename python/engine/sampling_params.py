"""How one request's tokens are chosen and when it stops."""

import msgspec

# Temperatures below this are greedy (vLLM's rule): dividing logits by a tinier one overflows.
GREEDY_BELOW_TEMPERATURE = 1e-5


class SamplingParams(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """`temperature == 0` (or below 1e-5) means greedy. `top_k <= 0` and `top_p == 1` disable
    those filters.

    `stop_token_ids` and `stop` strings end a request (the stop string itself is not returned);
    the model's EOS token ends it too unless `ignore_eos`.
    """

    max_tokens: int = 16
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int | None = None
    stop_token_ids: list[int] = []
    stop: list[str] = []
    ignore_eos: bool = False

    @property
    def is_greedy(self) -> bool:
        return self.temperature < GREEDY_BELOW_TEMPERATURE

    def validate(self, vocab_size: int) -> None:
        """Raises ValueError naming the first invalid field."""
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {self.max_tokens}")
        if not 0.0 <= self.temperature <= 100.0:
            raise ValueError(f"temperature must be in [0, 100], got {self.temperature}")
        if self.top_k < 0 and self.top_k != -1:
            raise ValueError(f"top_k must be -1, 0 (disabled) or positive, got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.seed is not None and not 0 <= self.seed < 2**63:
            raise ValueError(f"seed must be in [0, 2**63), got {self.seed}")
        for token in self.stop_token_ids:
            if not 0 <= token < vocab_size:
                raise ValueError(f"stop token id {token} is outside the vocabulary (size {vocab_size})")
        for text in self.stop:
            if not text:
                raise ValueError("stop strings must not be empty")
