"""How many output tokens each streamed event carried, from what the server says, never a guess.

In order of preference:
1. per-event usage (vLLM's `continuous_usage_stats`): the growth of `completion_tokens`;
2. logprobs: one entry per token in the event;
3. the final `usage.completion_tokens` equal to the number of events that carried text: one each;
4. the target's tokenizer over the whole text (tokenized once, never delta by delta): each token
   belongs to the event in which its last character arrived; the server's final count, where it
   gives one, sets the total (surplus or missing tokens are taken from or added to the last event).
Otherwise the request fails with an error that says what is missing.
"""

import bisect

import msgspec
from tokenizers import Tokenizer

from metron.targets.base import TargetError


class StreamEvent(msgspec.Struct):
    received_s: float
    text: str
    completion_tokens: int | None = None
    logprob_tokens: int | None = None


def tokens_per_event(
    events: list[StreamEvent], final_completion_tokens: int | None, tokenizer: Tokenizer | None
) -> list[int]:
    if not events:
        return []
    if all(event.completion_tokens is not None for event in events):
        counts, previous = [], 0
        for event in events:
            current = event.completion_tokens or 0
            counts.append(max(current - previous, 0))
            previous = max(previous, current)
        return counts
    if all(event.logprob_tokens is not None for event in events):
        return [event.logprob_tokens or 0 for event in events]
    num_with_text = sum(bool(event.text) for event in events)
    if final_completion_tokens is not None and final_completion_tokens == num_with_text:
        return [int(bool(event.text)) for event in events]
    if tokenizer is not None:
        return _attribute_with_tokenizer(events, final_completion_tokens, tokenizer)
    said = (
        f"the final usage says {final_completion_tokens} tokens in {num_with_text} text events"
        if final_completion_tokens is not None
        else "the server sent no usage"
    )
    raise TargetError(
        "cannot tell how many tokens each streamed event carried: the server reports neither per-event usage "
        f"nor logprobs, and {said}; pass the model's tokenizer (--tokenizer) or ask for logprobs (--logprobs)"
    )


def _attribute_with_tokenizer(
    events: list[StreamEvent], final_completion_tokens: int | None, tokenizer: Tokenizer
) -> list[int]:
    ends, length = [], 0
    for event in events:
        length += len(event.text)
        ends.append(length)
    encoding = tokenizer.encode("".join(event.text for event in events), add_special_tokens=False)
    counts = [0] * len(events)
    for _, end in encoding.offsets:
        counts[min(bisect.bisect_left(ends, end), len(events) - 1)] += 1
    if final_completion_tokens is not None:
        surplus = sum(counts) - final_completion_tokens
        for index in reversed(range(len(counts))):
            if surplus <= 0:
                break
            taken = min(counts[index], surplus)
            counts[index] -= taken
            surplus -= taken
        if surplus < 0:
            counts[-1] -= surplus
    return counts
