"""The per-token deadlines a run is scored against."""

import math

import msgspec

from metron.prefill_model import PrefillModel

# Deadlines are scored in integer nanoseconds and minimum deadlines found to 1 microsecond.
MIN_TBT_DEADLINE_S = 1e-6


class DeadlineConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`tbt_s` is D_d, the deadline of every token after the first. D_p, the first token's deadline,
    is `ttft_s`, or, when a `prefill` model (from `metron profile-prefill`) is given, its predicted
    prefill time for the request's prompt plus `ttft_slack_s`. `target_miss_rate` is the miss rate
    a request may have and still count as fluid at a TBT deadline (the minimum TBT deadline a
    request meets, and the fluid token generation rate, use it)."""

    tbt_s: float = 0.1
    ttft_s: float = 2.0
    prefill: PrefillModel | None = None
    ttft_slack_s: float = 0.3
    target_miss_rate: float = 0.1

    def __post_init__(self) -> None:
        if not (self.tbt_s >= MIN_TBT_DEADLINE_S and math.isfinite(self.tbt_s)):
            raise ValueError(
                f"the TBT deadline (tbt_s) must be a positive number of seconds, at least {MIN_TBT_DEADLINE_S:g}, "
                f"got {self.tbt_s}"
            )
        if not (self.ttft_s > 0 and math.isfinite(self.ttft_s)):
            raise ValueError(f"the TTFT deadline (ttft_s) must be a positive number of seconds, got {self.ttft_s}")
        if not (self.ttft_slack_s >= 0 and math.isfinite(self.ttft_slack_s)):
            raise ValueError(f"ttft_slack_s must be >= 0, got {self.ttft_slack_s}")
        if not 0 <= self.target_miss_rate < 1:
            raise ValueError(f"target_miss_rate must be in [0, 1), got {self.target_miss_rate}")

    def ttft_deadline_s(self, prompt_tokens: int) -> float:
        if self.prefill is None:
            return self.ttft_s
        return self.prefill.predict_s(prompt_tokens) + self.ttft_slack_s
