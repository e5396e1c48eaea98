"""How long requests are: prompt and output token counts."""

import msgspec
import numpy as np

from metron.traces import read_trace_column

LENGTH_KINDS = ("fixed", "uniform", "zipf", "trace")
CLIP_RULES = ("keep_output", "keep_prompt")


class LengthConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`fixed`: every request has `prompt_tokens` and `output_tokens`. `uniform`: each drawn
    uniformly from [min_*, *] (inclusive). `zipf`: each from a Zipf law with exponent `zipf_theta`
    bounded to [min_*, *], the shortest length the most likely. `trace`: pairs from the CSV at
    `trace_path` (`prompt_column`, `output_column`), rows in a seeded random order when `shuffle`
    (wrapping around when more requests than rows are asked for), else in file order.

    `max_total_tokens`, when set, clips every request to fit a model's context, by the `clip`
    rule. `keep_output` (Vidur's rule for replayed traces) shortens the prompt to what the output
    leaves, down to 1 token, and only then the output. `keep_prompt` shortens the prompt to at
    most `max_total_tokens - 1`, then the output to what is left."""

    kind: str = "fixed"
    prompt_tokens: int = 512
    output_tokens: int = 128
    min_prompt_tokens: int = 1
    min_output_tokens: int = 1
    zipf_theta: float = 1.1
    trace_path: str | None = None
    prompt_column: str = "num_prefill_tokens"
    output_column: str = "num_decode_tokens"
    shuffle: bool = True
    max_total_tokens: int | None = None
    clip: str = "keep_output"

    def __post_init__(self) -> None:
        if self.kind not in LENGTH_KINDS:
            raise ValueError(f"unknown length kind {self.kind!r}; choose one of {', '.join(LENGTH_KINDS)}")
        if self.kind == "trace":
            if not self.trace_path:
                raise ValueError("trace lengths need trace_path (a CSV with prompt and output token columns)")
        else:
            for name in ("prompt_tokens", "output_tokens", "min_prompt_tokens", "min_output_tokens"):
                if getattr(self, name) < 1:
                    raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
            if self.kind != "fixed":
                if self.min_prompt_tokens > self.prompt_tokens:
                    raise ValueError(
                        f"min_prompt_tokens ({self.min_prompt_tokens}) exceeds prompt_tokens ({self.prompt_tokens})"
                    )
                if self.min_output_tokens > self.output_tokens:
                    raise ValueError(
                        f"min_output_tokens ({self.min_output_tokens}) exceeds output_tokens ({self.output_tokens})"
                    )
        if self.kind == "zipf" and not self.zipf_theta > 0:
            raise ValueError(f"zipf_theta must be positive, got {self.zipf_theta}")
        if self.max_total_tokens is not None and self.max_total_tokens < 2:
            raise ValueError(f"max_total_tokens must be at least 2, got {self.max_total_tokens}")
        if self.clip not in CLIP_RULES:
            raise ValueError(f"unknown clip rule {self.clip!r}; choose one of {', '.join(CLIP_RULES)}")


def _zipf(rng: np.random.Generator, low: int, high: int, theta: float, size: int) -> np.ndarray:
    ranks = np.arange(1, high - low + 2, dtype=np.float64)
    weights = ranks**-theta
    return low + rng.choice(len(ranks), size=size, p=weights / weights.sum())


def request_lengths(config: LengthConfig, num_requests: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(prompt token counts, output token counts), each an int64 array of `num_requests`, all >= 1."""
    if num_requests < 0:
        raise ValueError(f"num_requests must not be negative, got {num_requests}")
    match config.kind:
        case "fixed":
            prompts = np.full(num_requests, config.prompt_tokens)
            outputs = np.full(num_requests, config.output_tokens)
        case "uniform":
            prompts = rng.integers(config.min_prompt_tokens, config.prompt_tokens + 1, num_requests)
            outputs = rng.integers(config.min_output_tokens, config.output_tokens + 1, num_requests)
        case "zipf":
            prompts = _zipf(rng, config.min_prompt_tokens, config.prompt_tokens, config.zipf_theta, num_requests)
            outputs = _zipf(rng, config.min_output_tokens, config.output_tokens, config.zipf_theta, num_requests)
        case _:
            trace_prompts = read_trace_column(config.trace_path or "", config.prompt_column)
            trace_outputs = read_trace_column(config.trace_path or "", config.output_column)
            num_rows = len(trace_prompts)
            if config.shuffle:
                passes = -(-num_requests // num_rows)
                rows = np.concatenate([rng.permutation(num_rows) for _ in range(passes)])[:num_requests]
            else:
                rows = np.arange(num_requests) % num_rows
            prompts = trace_prompts[rows]
            outputs = trace_outputs[rows]
    prompts = np.maximum(np.asarray(prompts, dtype=np.int64), 1)
    outputs = np.maximum(np.asarray(outputs, dtype=np.int64), 1)
    if config.max_total_tokens is not None:
        prompts, outputs = _clip(prompts, outputs, config.max_total_tokens, config.clip)
    return prompts, outputs


def _clip(prompts: np.ndarray, outputs: np.ndarray, max_total_tokens: int, rule: str) -> tuple[np.ndarray, np.ndarray]:
    """Requests (lengths >= 1) clipped to `max_total_tokens` in all by `rule` (`LengthConfig.clip`)."""
    if rule == "keep_output":
        prompts = np.maximum(np.minimum(prompts, max_total_tokens - outputs), 1)
    else:
        prompts = np.minimum(prompts, max_total_tokens - 1)
    return prompts, np.minimum(outputs, max_total_tokens - prompts)
